// The TypeScript twin of probe.py's environ dump: the environ test sends one
// request to each and compares the CGI values key by key.
import type { Environ, StartResponse } from "../../server.ts";

export default function app(environ: Environ, startResponse: StartResponse): string[] {
  const body = Buffer.from(environ["wsgi.input"].read()).toString("latin1");
  const cgi: Record<string, string> = {};
  const nonStrKeys: string[] = [];
  for (const [key, value] of Object.entries(environ)) {
    if (key.startsWith("wsgi.")) continue;
    if (typeof value === "string") cgi[key] = value;
    else nonStrKeys.push(key);
  }
  const wsgi = {
    url_scheme: environ["wsgi.url_scheme"],
    multithread: environ["wsgi.multithread"],
    multiprocess: environ["wsgi.multiprocess"],
    run_once: environ["wsgi.run_once"],
    non_str_keys: nonStrKeys.sort(),
  };
  const text = JSON.stringify({ cgi, wsgi, body });
  startResponse("200 OK", [["Content-Type", "application/json"], ["Content-Length", String(Buffer.byteLength(text))]]);
  return [text];
}
