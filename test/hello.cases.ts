// The hello app (apps/hello.ts, apps/hello.py) as data: a request target and
// the exact body it must get. Runs in-process in test/apps.test.ts; over a
// real server, send `toRequestBytes(c.request)` and call `checkHelloCase`
// (skipping the cases with `skipOverServer`).
import { type CaseRequest, type CaseResponse, findHeader } from "./tasks.cases.ts";

export interface HelloCase {
  name: string;
  request: CaseRequest;
  /** The exact body text (sent as UTF-8). */
  expectBody: string;
  /** Set (to the reason) when the case only makes sense in-process: over a server, skip it. */
  skipOverServer?: string;
}

function hello(name: string, target: string, expectBody: string): HelloCase {
  return { name, request: { method: "GET", target }, expectBody };
}

export const HELLO_CASES: readonly HelloCase[] = [
  hello("no query", "/", "Hello, World!"),
  hello("any path", "/some/where", "Hello, World!"),
  hello("plain name", "/?name=Ann", "Hello, Ann!"),
  hello("UTF-8 escapes", "/?name=Jos%C3%A9", "Hello, José!"),
  hello("four-byte character", "/?name=%F0%9F%8E%89", "Hello, 🎉!"),
  hello("plus is a space", "/?name=J+D", "Hello, J D!"),
  hello("escaped plus", "/?name=a%2Bb", "Hello, a+b!"),
  hello("escaped ampersand", "/?name=a%26b", "Hello, a&b!"),
  hello("lower-case hex", "/?name=%c3%a9", "Hello, é!"),
  hello("empty value is the default", "/?name=", "Hello, World!"),
  hello("key without value is the default", "/?name", "Hello, World!"),
  hello("other parameters", "/?x=1&name=Bo&y", "Hello, Bo!"),
  hello("first name wins", "/?name=Bo&name=Cy", "Hello, Bo!"),
  hello("escaped key", "/?n%61me=Al", "Hello, Al!"),
  hello("semicolon is not a separator", "/?name=a;b", "Hello, a;b!"),
  hello("bad escape stays", "/?name=%zz", "Hello, %zz!"),
  hello("trailing percent stays", "/?name=100%", "Hello, 100%!"),
  hello("half escape stays", "/?name=%4", "Hello, %4!"),
  hello("invalid byte", "/?name=%FF", "Hello, \ufffd!"),
  hello("truncated sequence", "/?name=%E2%9C", "Hello, \ufffd!"),
  hello("encoded surrogate", "/?name=%ED%A0%80", "Hello, \ufffd\ufffd\ufffd!"),
  hello("overlong encoding", "/?name=%C0%AF", "Hello, \ufffd\ufffd!"),
  hello("BOM is kept", "/?name=%EF%BB%BFx", "Hello, \ufeffx!"),
  {
    ...hello("raw UTF-8 bytes in the query", "/?name=Jos\u00c3\u00a9", "Hello, José!"),
    skipOverServer: "a server may answer 400 to bytes above 0x7f in the request-target (RFC 9112 §3.2 allows only ASCII)",
  },
  hello("equals sign in value", "/?name=a=b", "Hello, a=b!"),
];

/** Mismatches between a response and a case (empty when it passes). */
export function checkHelloCase(c: HelloCase, res: CaseResponse): string[] {
  const problems: string[] = [];
  const want = new TextEncoder().encode(c.expectBody);
  if (res.status !== 200) problems.push(`status ${res.status}, expected 200`);
  const contentType = findHeader(res.headers, "content-type");
  if (contentType !== "text/plain; charset=utf-8") problems.push(`Content-Type ${contentType}`);
  const contentLength = findHeader(res.headers, "content-length");
  if (contentLength !== String(want.length)) problems.push(`Content-Length ${contentLength}, expected ${want.length}`);
  if (!Buffer.from(res.body).equals(Buffer.from(want))) {
    problems.push(`body ${JSON.stringify(new TextDecoder().decode(res.body))}, expected ${JSON.stringify(c.expectBody)}`);
  }
  return problems;
}
