// The PEP 3333 environ (server.ts section "Environ") as a TypeScript app sees it, over real
// sockets: CGI keys and their decoding, SCRIPT_NAME and PATH_INFO under a root path, header
// fields joined or dropped, the client's address, and wsgi.input on length and chunked
// bodies. (The Python side of the same environ is compared key by key in python.test.ts.)
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Environ, type WsgiApp } from "../server.ts";
import { RawClient, cleanUp, exchange, header, serve, spawnServer } from "./helpers.ts";

afterEach(cleanUp);

const HOST = "Host: t\r\n";
const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\n${HOST}${extra}\r\n`;

/** The JSON-able part of an environ: strings, booleans, arrays. */
function environSnapshot(environ: Environ): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(environ)) {
    if (typeof v === "string" || typeof v === "boolean" || Array.isArray(v)) out[k] = v;
  }
  return out;
}

const environApp: WsgiApp = (environ, start) => {
  const body = Buffer.from(JSON.stringify(environSnapshot(environ)), "utf8");
  start("200 OK", [["Content-Type", "application/json"]]);
  return [body];
};

async function fetchEnviron(port: number, request: string): Promise<Record<string, any>> {
  const r = await exchange(port, request);
  expect(r.responses.length).toBe(1);
  expect(r.responses[0].status).toBe(200);
  return JSON.parse(r.responses[0].body.toString("utf8"));
}

// ==== environ ====

describe("environ seen by a TypeScript app", () => {
  test("REQUEST_METHOD, raw QUERY_STRING, SERVER_PROTOCOL and the wsgi.* keys (PEP 3333)", async () => {
    const { port } = serve(environApp);
    const env = await fetchEnviron(port, `PATCH /p/q?a=%20b&c=d+e&&x=%FF HTTP/1.1\r\n${HOST}\r\n`);
    expect(env.REQUEST_METHOD).toBe("PATCH");
    expect(env.QUERY_STRING).toBe("a=%20b&c=d+e&&x=%FF");
    expect(env.SCRIPT_NAME).toBe("");
    expect(env.PATH_INFO).toBe("/p/q");
    expect(env.SERVER_PROTOCOL).toBe("HTTP/1.1");
    expect(env.SERVER_PORT).toBe(String(port));
    expect(env.HTTP_HOST).toBe("t");
    expect(env["wsgi.version"]).toEqual([1, 0]);
    expect(env["wsgi.url_scheme"]).toBe("http");
    expect(env["wsgi.input_terminated"]).toBe(true);
    expect(env["wsgi.run_once"]).toBe(false);
    const env10 = await fetchEnviron(port, "GET /ten HTTP/1.0\r\n\r\n");
    expect(env10.SERVER_PROTOCOL).toBe("HTTP/1.0");
    expect(env10.REQUEST_METHOD).toBe("GET");
  });

  test("PATH_INFO is percent-decoded into latin-1 chars, %00 and %FF included; QUERY_STRING and RAW_URI stay raw", async () => {
    const { port } = serve(environApp);
    const env = await fetchEnviron(port, get("/a%20b/%00/%FF/%e9/%2F/%zz/%?q=%00"));
    expect(env.PATH_INFO).toBe("/a b/\u0000/\u00ff/\u00e9///%zz/%");
    expect([...env.PATH_INFO as string].map((c) => c.charCodeAt(0)).every((c) => c <= 0xff)).toBe(true);
    expect(env.QUERY_STRING).toBe("q=%00");
    expect(env.RAW_URI).toBe("/a%20b/%00/%FF/%e9/%2F/%zz/%?q=%00");
  });

  test("rootPath option: SCRIPT_NAME is the root, PATH_INFO the rest; only whole segments are stripped", async () => {
    const { port } = serve(environApp, { rootPath: "/app" });
    let env = await fetchEnviron(port, get("/app/x/y?z=1"));
    expect([env.SCRIPT_NAME, env.PATH_INFO, env.QUERY_STRING]).toEqual(["/app", "/x/y", "z=1"]);
    env = await fetchEnviron(port, get("/app"));
    expect([env.SCRIPT_NAME, env.PATH_INFO]).toEqual(["/app", ""]);
    env = await fetchEnviron(port, get("/application"));
    expect([env.SCRIPT_NAME, env.PATH_INFO]).toEqual(["/app", "/application"]);
  });

  test("CONTENT_TYPE and CONTENT_LENGTH have no HTTP_ prefix and no HTTP_ twin", async () => {
    const { port } = serve(environApp);
    const env = await fetchEnviron(port, `POST /form HTTP/1.1\r\n${HOST}Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nabc`);
    expect(env.CONTENT_TYPE).toBe("text/plain; charset=utf-8");
    expect(env.CONTENT_LENGTH).toBe("3");
    expect("HTTP_CONTENT_TYPE" in env).toBe(false);
    expect("HTTP_CONTENT_LENGTH" in env).toBe(false);
  });

  test("a repeated Content-Length (two fields, or '5, 5') reaches the app as the one value that framed the body", async () => {
    const { port } = serve((environ, start) => {
      const cl = environ.CONTENT_LENGTH;
      const body = Buffer.from(environ["wsgi.input"].read(Number(cl))).toString("latin1");
      start("200 OK", [["Content-Type", "application/json"]]);
      return [JSON.stringify({ cl, body })];
    });
    for (const fields of ["Content-Length: 5\r\nContent-Length: 5\r\n", "Content-Length: 5, 5\r\n", "Content-Length: 5,5\r\nContent-Length: 5\r\n"]) {
      const r = await exchange(port, `POST /up HTTP/1.1\r\n${HOST}${fields}\r\nhello`);
      expect(r.responses.map((res) => [res.status, JSON.parse(res.body.toString() || "null")])).toEqual([[200, { cl: "5", body: "hello" }]]);
    }
  });

  test("a header with '_' in its name is dropped, so it cannot pose as its '-' twin", async () => {
    const { port } = serve(environApp);
    const env = await fetchEnviron(port, get("/", "X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\nX_Only: z\r\n"));
    expect(env.HTTP_X_FORWARDED_FOR).toBe("1.1.1.1");
    expect("HTTP_X_ONLY" in env).toBe(false);
    expect(Object.values(env)).not.toContain("6.6.6.6");
  });

  test("repeated headers join with ', ' in wire order (any name case); Cookie joins with '; '", async () => {
    const { port } = serve(environApp);
    const env = await fetchEnviron(port, get("/", "Accept: a/b\r\nX-Multi: 1\r\nCookie: a=1\r\naccept: c/d\r\nx-multi: 2\r\nCOOKIE: b=2\r\nX-Multi: 3\r\n"));
    expect(env.HTTP_ACCEPT).toBe("a/b, c/d");
    expect(env.HTTP_X_MULTI).toBe("1, 2, 3");
    expect(env.HTTP_COOKIE).toBe("a=1; b=2");
  });

  test("REMOTE_ADDR and REMOTE_PORT are the client's address and port", async () => {
    const { port } = serve(environApp);
    const client = await RawClient.connect(port);
    client.write(get("/"));
    const [res] = await client.readResponses(1);
    const env = JSON.parse(res.body.toString());
    expect(env.REMOTE_ADDR).toBe("127.0.0.1");
    expect(env.REMOTE_PORT).toBe(String(client.socket.localPort));
    expect(env.SERVER_NAME).toBe("127.0.0.1");
  });

  test("wsgi.input: read(n), readline(), readline(limit), iteration and read() at EOF", async () => {
    const app: WsgiApp = (environ, start) => {
      const input = environ["wsgi.input"];
      const s = (b: Uint8Array) => Buffer.from(b).toString("latin1");
      const seen = {
        line: s(input.readline()),
        two: s(input.read(2)),
        limited: s(input.readline(3)),
        rest: [...input].map(s),
        eof: s(input.read()),
        eofLine: s(input.readline()),
      };
      start("200 OK", [["Content-Type", "application/json"]]);
      return [JSON.stringify(seen)];
    };
    const { port } = serve(app);
    const body = "line1\nabcdef\nline3\nlast";
    const r = await exchange(port, `POST / HTTP/1.1\r\n${HOST}Content-Length: ${body.length}\r\n\r\n${body}`);
    expect(JSON.parse(r.responses[0].body.toString())).toEqual({
      line: "line1\n", two: "ab", limited: "cde", rest: ["f\n", "line3\n", "last"], eof: "", eofLine: "",
    });
  });

  test("wsgi.input: a chunked request body arrives de-chunked, with wsgi.input_terminated true", async () => {
    const app: WsgiApp = (environ, start) => {
      const data = Buffer.from(environ["wsgi.input"].read()).toString("latin1");
      start("200 OK", [["Content-Type", "application/json"]]);
      return [JSON.stringify({ data, terminated: environ["wsgi.input_terminated"] })];
    };
    const { port } = serve(app);
    const r = await exchange(port, `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n5\r\nline1\r\n6;ext=1\r\n\nline2\r\n0\r\nX-Trailer: t\r\n\r\n`);
    expect(JSON.parse(r.responses[0].body.toString())).toEqual({ data: "line1\nline2", terminated: true });
  });
});

test("SCRIPT_NAME from the environment and --root-path set the root of a subprocess server", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bunicorn-env-"));
  try {
    const file = join(dir, "environ_app.ts");
    writeFileSync(file, `export default function app(environ: any, start: any) {
  start("200 OK", [["Content-Type", "application/json"]]);
  return [JSON.stringify({ SCRIPT_NAME: environ.SCRIPT_NAME, PATH_INFO: environ.PATH_INFO })];
}
`);
    const fromEnv = await spawnServer(["-b", "127.0.0.1:0", file], { env: { SCRIPT_NAME: "/mnt" } });
    let r = await exchange(fromEnv.port, get("/mnt/hello"));
    expect(JSON.parse(r.responses[0].body.toString())).toEqual({ SCRIPT_NAME: "/mnt", PATH_INFO: "/hello" });
    const fromFlag = await spawnServer(["-b", "127.0.0.1:0", "--root-path", "/api", file], { env: { SCRIPT_NAME: "/mnt" } });
    r = await exchange(fromFlag.port, get("/api/v1"));
    expect(JSON.parse(r.responses[0].body.toString())).toEqual({ SCRIPT_NAME: "/api", PATH_INFO: "/v1" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
