// The benchmark app: `Hello, NAME!` where NAME is the `name` query parameter
// (default `World`). apps/hello.py answers byte for byte the same.
//
// Query decoding follows urllib.parse.parse_qsl on the raw bytes: pairs split
// on "&", "+" is a space, "%XX" is a byte (a bad escape stays as typed), then
// the bytes are decoded as UTF-8 with U+FFFD for invalid sequences. The first
// `name` wins; an empty value counts as absent.
import type { WsgiApp } from "../server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // keep a BOM: Python does
const DEFAULT_BODY = encoder.encode("Hello, World!");

/** Percent-decodes a raw (latin-1) query component into bytes; "+" becomes a space. */
function unquotePlusToBytes(raw: string): Uint8Array {
  const out = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x2b) {
      out[n++] = 0x20;
    } else if (c === 0x25 && i + 2 < raw.length && isHex(raw.charCodeAt(i + 1)) && isHex(raw.charCodeAt(i + 2))) {
      out[n++] = parseInt(raw.slice(i + 1, i + 3), 16);
      i += 2;
    } else {
      out[n++] = c & 0xff; // environ strings are latin-1: one char per wire byte
    }
  }
  return out.subarray(0, n);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Returns the first `name` value of a raw query string, or "" when absent. */
function findName(query: string): string {
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (key !== "name" && decoder.decode(unquotePlusToBytes(key)) !== "name") continue;
    return eq < 0 ? "" : decoder.decode(unquotePlusToBytes(pair.slice(eq + 1)));
  }
  return "";
}

const hello: WsgiApp = (environ, startResponse) => {
  const query: string = environ.QUERY_STRING ?? "";
  const name = query === "" ? "" : findName(query);
  const body = name === "" ? DEFAULT_BODY : encoder.encode(`Hello, ${name}!`);
  startResponse("200 OK", [
    ["Content-Type", "text/plain; charset=utf-8"],
    ["Content-Length", String(body.length)],
  ]);
  return [body];
};

export default hello;
