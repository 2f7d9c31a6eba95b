// The HTTP engine over real sockets, with TypeScript apps: a server on port 0
// (in-process unless the process itself matters), a raw client writing exact
// bytes, assertions on the exact bytes returned.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Environ, type WsgiApp, SERVER_HEADER } from "../server.ts";
import { NetClient, RawClient, cleanUp, deferred, exchange, header, headerValues, parseResponses, serve, sleep, spawnServer } from "./helpers.ts";
import { startPy, stopPy } from "./pyhelpers.ts";

afterEach(cleanUp);

const HOST = "Host: t\r\n";
const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\n${HOST}${extra}\r\n`;
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

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

/** Answers with the path it saw (PATH_INFO), after a delay for /slow. */
const pathApp: WsgiApp = async (environ, start) => {
  if (environ.PATH_INFO === "/slow") await sleep(150);
  const body = Buffer.from(environ.PATH_INFO + (environ.REQUEST_METHOD === "POST" ? ":" + Buffer.from(environ["wsgi.input"].read()).toString() : ""));
  start("200 OK", [["Content-Type", "text/plain"]]);
  return [body];
};

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

// ==== start_response ====

describe("start_response (PEP 3333)", () => {
  test("called twice without exc_info → 500", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      start("201 Created", [["Content-Type", "text/plain"]]);
      return ["never"];
    });
    const r = await exchange(port, get("/"));
    expect(r.responses[0].statusLine).toBe("HTTP/1.1 500 Internal Server Error");
    expect(r.text).not.toContain("never");
    expect(r.isClosed).toBe(true);
  });

  test("with exc_info before any body byte → the new status and headers replace the old", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"], ["X-First", "1"]]);
      try {
        throw new Error("late failure");
      } catch (err) {
        start("503 Service Unavailable", [["Content-Type", "text/plain"], ["X-Second", "2"]], err);
        return ["sorry"];
      }
    });
    const r = await exchange(port, get("/"));
    const res = r.responses[0];
    expect(res.statusLine).toBe("HTTP/1.1 503 Service Unavailable");
    expect(header(res, "X-Second")).toBe("2");
    expect(header(res, "X-First")).toBeUndefined();
    expect(res.body.toString()).toBe("sorry");
  });

  test("with exc_info after body bytes went out → exc_info is rethrown and the connection is cut (no complete-looking response)", async () => {
    let rethrown: unknown = null;
    const failure = new Error("mid-stream failure");
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return (function* () {
        yield Buffer.alloc(256 * 1024, 0x61); // more than a write buffer: on the wire for sure
        try {
          start("500 Internal Server Error", [["Content-Type", "text/plain"]], failure);
        } catch (err) {
          rethrown = err;
          throw err;
        }
        yield "never";
      })();
    });
    const client = await RawClient.connect(port);
    client.write(get("/") + get("/second"));
    expect(await client.waitForClose(3000)).toBe(true);
    expect(rethrown).toBe(failure);
    const { responses } = parseResponses(client.bytes, [], true);
    expect(responses.length).toBe(1);
    expect(responses[0].status).toBe(200);
    expect(responses[0].isComplete).toBe(false);
    expect(client.text).not.toContain("never");
    expect(client.text).not.toContain("/second");
  });

  test("with exc_info after a small body chunk → rethrown, and the client never sees a complete 200", async () => {
    let rethrown: unknown = null;
    const failure = new Error("mid-stream failure");
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return (function* () {
        yield "partial";
        try {
          start("500 Internal Server Error", [["Content-Type", "text/plain"]], failure);
        } catch (err) {
          rethrown = err;
          throw err;
        }
      })();
    });
    const r = await exchange(port, get("/"));
    expect(rethrown).toBe(failure);
    expect(r.isClosed).toBe(true);
    const res = r.responses[0];
    expect(res.status === 200 && res.isComplete).toBe(false);
  });
});

// ==== response framing ====

describe("response framing", () => {
  test("a head reused between like responses never hides a change: each value is checked and sent as given", async () => {
    // The server reuses the last checked head while the app answers alike; every difference must show.
    const { port } = serve((environ, start) => {
      const v = decodeURIComponent(environ.QUERY_STRING);
      start(v === "404" ? "404 Not Found" : "200 OK", [["Content-Type", "text/plain"], ["X-V", v]]);
      return ["ok"];
    });
    const client = await RawClient.connect(port);
    const targets = ["/?a", "/?a", "/?b", "/?404", "/?a", `/?${encodeURIComponent("bad\r\nSet-Cookie: x=1")}`]; // the 500 closes the connection
    client.write(targets.map((t) => get(t)).join(""));
    const responses = await client.readResponses(targets.length);
    expect(responses.map((r) => [r.status, header(r, "X-V") ?? null, headerValues(r, "Set-Cookie").length])).toEqual([
      [200, "a", 0], [200, "a", 0], [200, "b", 0], [404, "404", 0], [200, "a", 0], [500, null, 0],
    ]);
    client.destroy();
    // HTTP/1.0 and Connection: close after an identical 1.1 keep-alive head: the Connection line follows each request.
    const r = await exchange(port, get("/?a") + "GET /?a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/?a", "Connection: close\r\n"), { count: 3 });
    expect(r.responses.map((res) => header(res, "Connection") ?? null)).toEqual([null, "keep-alive", "close"]);
  });

  test("the app's Content-Length is honoured: no chunking", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"], ["Content-Length", "11"]]);
      return (function* () { yield "hello"; yield " world"; })();
    });
    const r = await exchange(port, get("/"));
    const res = r.responses[0];
    expect(header(res, "Content-Length")).toBe("11");
    expect(header(res, "Transfer-Encoding")).toBeUndefined();
    expect(res.framing).toBe("length");
    expect(res.rawBody.toString()).toBe("hello world");
  });

  test("no Content-Length on HTTP/1.1 → chunked, one chunk per non-empty app chunk, exact bytes", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return (function* () {
        yield "abc";
        yield "";
        yield new TextEncoder().encode("0123456789abcdefg");
        yield "é";
      })();
    });
    const r = await exchange(port, get("/"));
    const res = r.responses[0];
    expect(header(res, "Transfer-Encoding")).toBe("chunked");
    expect(header(res, "Content-Length")).toBeUndefined();
    expect(res.rawBody).toEqual(Buffer.from("3\r\nabc\r\n11\r\n0123456789abcdefg\r\n2\r\n\xc3\xa9\r\n0\r\n\r\n", "latin1"));
    expect(r.isClosed).toBe(false);
  });

  test("no Content-Length on HTTP/1.0 → the body ends at the close", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return (function* () { yield "one,"; yield "two"; })();
    });
    const r = await exchange(port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const res = r.responses[0];
    expect(r.isClosed).toBe(true);
    expect(header(res, "Content-Length")).toBeUndefined();
    expect(header(res, "Transfer-Encoding")).toBeUndefined();
    expect(header(res, "Connection")).toBe("close");
    expect(res.framing).toBe("close");
    expect(res.body.toString()).toBe("one,two");
  });

  test("a one-item array body gets a Content-Length", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return ["héllo"];
    });
    const r = await exchange(port, get("/"));
    const res = r.responses[0];
    expect(header(res, "Content-Length")).toBe("6");
    expect(header(res, "Transfer-Encoding")).toBeUndefined();
    expect(res.rawBody).toEqual(Buffer.from("héllo"));
  });

  test("a body longer than its Content-Length: only Content-Length bytes go out, then the connection closes", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"], ["Content-Length", "5"]]);
      return (function* () { yield "hel"; yield "loEXTRA"; yield "MORE"; })();
    });
    const client = await RawClient.connect(port);
    client.write(get("/") + get("/second"));
    expect(await client.waitForClose(3000)).toBe(true);
    const { responses, rest } = parseResponses(client.bytes, [], true);
    expect(responses.length).toBe(1);
    expect(responses[0].body.toString()).toBe("hello");
    expect(rest.length).toBe(0);
    expect(client.text).not.toContain("EXTRA");
  });

  test("a body shorter than its Content-Length: the connection closes before Content-Length bytes", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"], ["Content-Length", "10"]]);
      return (function* () { yield "hello"; })();
    });
    const client = await RawClient.connect(port);
    client.write(get("/") + get("/second"));
    expect(await client.waitForClose(3000)).toBe(true);
    const { responses } = parseResponses(client.bytes, [], true);
    expect(responses.length).toBe(1);
    expect(responses[0].isComplete).toBe(false);
    expect(responses[0].body.toString()).toBe("hello");
  });

  test("HEAD gets the same headers as GET and no body; a pipelined GET after it parses cleanly", async () => {
    for (const kind of ["array", "generator"] as const) {
      const { port } = serve((_env, start) => {
        start("200 OK", [["Content-Type", "text/plain"], ["X-Kind", kind]]);
        return kind === "array" ? ["hello"] : (function* () { yield "hel"; yield "lo"; })();
      });
      const client = await RawClient.connect(port);
      client.write(`HEAD / HTTP/1.1\r\n${HOST}\r\n` + get("/"));
      const responses = await client.readResponses(2, ["HEAD", "GET"]);
      expect(responses.length).toBe(2);
      const [head, full] = responses;
      const noDate = (h: [string, string][]) => h.filter(([n]) => n.toLowerCase() !== "date");
      expect(noDate(head.headers)).toEqual(noDate(full.headers));
      expect(head.head.endsWith("\r\n\r\n")).toBe(true);
      expect(full.body.toString()).toBe("hello");
      expect(parseResponses(client.bytes, ["HEAD", "GET"]).rest.length).toBe(0);
    }
  });

  test("HEAD with an empty body: no Content-Length is invented; the app's own is sent as given (RFC 9110 §9.3.2)", async () => {
    const { port } = serve((environ, start) => {
      const kind = environ.PATH_INFO.slice(1);
      start("200 OK", kind === "own" ? [["Content-Length", "5"]] : [["X-Kind", kind]]);
      if (kind === "generator") return (function* () {})();
      return kind === "empty-string" ? [""] : [];
    });
    for (const kind of ["list", "empty-string", "generator", "own"]) {
      const client = await RawClient.connect(port);
      client.write(`HEAD /${kind} HTTP/1.1\r\n${HOST}\r\n` + get("/list"));
      const responses = await client.readResponses(2, ["HEAD", "GET"]);
      expect(responses.map((r) => r.status)).toEqual([200, 200]);
      expect([kind, headerValues(responses[0], "Content-Length")]).toEqual([kind, kind === "own" ? ["5"] : []]);
      expect(parseResponses(client.bytes, ["HEAD", "GET"]).rest.length).toBe(0);
      client.destroy();
    }
  });

  test("204 and 304 have no body even when the app yields one; the next pipelined response is intact", async () => {
    const { port } = serve((environ, start) => {
      const status = environ.PATH_INFO === "/204" ? "204 No Content" : environ.PATH_INFO === "/304" ? "304 Not Modified" : "200 OK";
      start(status, [["Content-Type", "text/plain"]]);
      return (function* () { yield "BODY-" + environ.PATH_INFO; })();
    });
    const client = await RawClient.connect(port);
    client.write(get("/204") + get("/304") + get("/after"));
    const responses = await client.readResponses(3);
    expect(responses.map((r) => r.status)).toEqual([204, 304, 200]);
    expect(client.text).not.toContain("BODY-/204");
    expect(client.text).not.toContain("BODY-/304");
    for (const r of responses.slice(0, 2)) {
      expect(header(r, "Transfer-Encoding")).toBeUndefined();
      expect(header(r, "Content-Length")).toBeUndefined();
    }
    expect(responses[2].body.toString()).toBe("BODY-/after");
  });

  const injections: [string, string, [string, string][]][] = [
    ["CRLF in the status", "200 OK\r\nX-Injected: yes", [["Content-Type", "text/plain"]]],
    ["LF in the status", "200 OK\nX-Injected: yes", [["Content-Type", "text/plain"]]],
    ["NUL in the status", "200 O\0K", [["Content-Type", "text/plain"]]],
    ["CRLF in a header value", "200 OK", [["X-Value", "ok\r\nX-Injected: yes"]]],
    ["bare LF in a header value", "200 OK", [["X-Value", "ok\nX-Injected: yes"]]],
    ["bare CR in a header value", "200 OK", [["X-Value", "ok\rX-Injected: yes"]]],
    ["NUL in a header value", "200 OK", [["X-Value", "a\0X-Injected: yes"]]],
    ["CRLF in a header name", "200 OK", [["X-Name\r\nX-Injected", "yes"]]],
    ["NUL in a header name", "200 OK", [["X-Injected\0", "yes"]]],
  ];
  for (const [name, status, headers] of injections) {
    test(`${name} → 500, nothing of it on the wire`, async () => {
      const { port } = serve((_env, start) => {
        start(status, headers);
        return ["app-body"];
      });
      const r = await exchange(port, get("/"));
      expect(r.responses.length).toBe(1);
      expect(r.responses[0].statusLine).toBe("HTTP/1.1 500 Internal Server Error");
      expect(r.text).not.toContain("X-Injected");
      expect(r.text).not.toContain("app-body");
      expect(r.isClosed).toBe(true);
    });
  }

  test("header values are latin-1 on the wire (PEP 3333); a char above U+00FF → 500", async () => {
    const { port } = serve((environ, start) => {
      start("200 OK", [["Content-Type", "text/plain"], ["X-Latin", environ.PATH_INFO === "/wide" ? "caf\u20ac" : "caf\u00e9"]]);
      return ["x"];
    });
    const latin = await exchange(port, get("/latin"));
    expect(latin.bytes.includes(Buffer.from("\r\nX-Latin: caf\xe9\r\n", "latin1"))).toBe(true);
    const wide = await exchange(port, get("/wide"));
    expect(wide.responses[0].status).toBe(500);
    expect(wide.text).not.toContain("X-Latin");
  });

  test("Date and Server are added when the app sends none, and kept (not doubled) when it does", async () => {
    const { port } = serve((environ, start) => {
      const own: [string, string][] = environ.PATH_INFO === "/own" ? [["date", "Mon, 01 Jan 2001 00:00:00 GMT"], ["SERVER", "custom/1"]] : [];
      start("200 OK", [["Content-Type", "text/plain"], ...own]);
      return ["x"];
    });
    const client = await RawClient.connect(port);
    client.write(get("/") + get("/own"));
    const [plain, own] = await client.readResponses(2);
    expect(header(plain, "Date")).toMatch(IMF_FIXDATE);
    expect(header(plain, "Server")).toBe(SERVER_HEADER);
    expect(headerValues(own, "Date")).toEqual(["Mon, 01 Jan 2001 00:00:00 GMT"]);
    expect(headerValues(own, "Server")).toEqual(["custom/1"]);
  });

  test("the app's hop-by-hop headers are dropped: the server owns Connection and Transfer-Encoding", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"], ["Connection", "close"], ["Transfer-Encoding", "chunked"], ["Keep-Alive", "timeout=99"]]);
      return (function* () { yield "ab"; })();
    });
    const r = await exchange(port, get("/") + get("/second"), { count: 2 });
    expect(r.responses.length).toBe(1);
    const res = r.responses[0];
    expect(headerValues(res, "Connection")).toEqual(["close"]);
    expect(headerValues(res, "Transfer-Encoding")).toEqual(["chunked"]);
    expect(header(res, "Keep-Alive")).toBeUndefined();
    expect(res.rawBody.toString()).toBe("2\r\nab\r\n0\r\n\r\n");
    expect(r.isClosed).toBe(true);
  });

  test("the write() callable's bytes come before the returned body's", async () => {
    const { port } = serve((_env, start) => {
      const write = start("200 OK", [["Content-Type", "text/plain"]]);
      write("abc");
      return ["def"];
    });
    const r = await exchange(port, get("/"));
    expect(r.responses[0].body.toString()).toBe("abcdef");
  });
});

// ==== keep-alive, pipelining ====

describe("keep-alive and pipelining", () => {
  test("HTTP/1.1 keeps the connection by default", async () => {
    const { port } = serve(pathApp);
    const client = await RawClient.connect(port);
    client.write(get("/one"));
    const [first] = await client.readResponses(1);
    expect(first.body.toString()).toBe("/one");
    expect(header(first, "Connection")).toBeUndefined();
    client.write(get("/two"));
    const responses = await client.readResponses(2);
    expect(responses.map((r) => r.body.toString())).toEqual(["/one", "/two"]);
    expect(client.isDone).toBe(false);
  });

  test("HTTP/1.0 with Connection: keep-alive keeps the connection and says so", async () => {
    const { port } = serve(pathApp);
    const client = await RawClient.connect(port);
    client.write("GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const [first] = await client.readResponses(1);
    expect(header(first, "Connection")).toBe("keep-alive");
    client.write("GET /two HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    const responses = await client.readResponses(2);
    expect(responses.map((r) => r.body.toString())).toEqual(["/one", "/two"]);
    expect(client.isDone).toBe(false);
  });

  test("HTTP/1.0 without keep-alive closes after the response", async () => {
    const { port } = serve(pathApp);
    const r = await exchange(port, "GET /one HTTP/1.0\r\n\r\nGET /two HTTP/1.0\r\n\r\n");
    expect(r.isClosed).toBe(true);
    expect(r.responses.length).toBe(1);
    expect(header(r.responses[0], "Connection")).toBe("close");
  });

  test("Connection: close → the response says close, the connection closes, a pipelined request is not answered", async () => {
    const { port } = serve(pathApp);
    const r = await exchange(port, get("/one", "Connection: close\r\n") + get("/two"), { count: 2 });
    expect(r.isClosed).toBe(true);
    expect(r.responses.length).toBe(1);
    expect(header(r.responses[0], "Connection")).toBe("close");
    expect(r.text).not.toContain("/two");
  });

  test("Connection: close with pipelined requests behind it: the first response whole, then EOF, never a reset", async () => {
    const { port } = serve(pathApp);
    const client = await NetClient.connect(port);
    client.socket.write(get("/one", "Connection: close\r\n") + get("/two"));
    expect(await client.waitForEnd()).toBe(true);
    // A pipelining client may still be sending when the server's FIN comes: those bytes must not reset the connection.
    client.socket.write(get("/three"));
    // Give a reset the time to come back before we half-close (a reset is what must never come).
    await client.waitUntil(() => client.endEvents.length > 1, 500);
    client.socket.end();
    expect(await client.waitUntil(() => client.isClosed)).toBe(true);
    const { responses, rest } = parseResponses(client.bytes, [], true);
    expect(responses.map((r) => [r.status, r.body.toString(), r.isComplete])).toEqual([[200, "/one", true]]);
    expect(rest.length).toBe(0);
    expect(client.endEvents).toEqual(["eof"]);
  });

  // A connection already lingering (FIN sent, waiting for the client's) when a graceful stop
  // begins still closes at its linger deadline: the stop must not wait out --graceful-timeout for it.
  test("a graceful stop does not wait for a client that never answers our FIN", async () => {
    const server = serve(pathApp, { gracefulTimeoutS: 20 });
    const client = await NetClient.connect(server.port); // allowHalfOpen: it does not answer a FIN with its own
    client.socket.write(get("/one", "Connection: close\r\n"));
    expect(await client.waitForEnd()).toBe(true); // our FIN: lingering now
    const isStopped = await Promise.race([server.stop(true).then(() => true), sleep(6000).then(() => false)]);
    expect(isStopped).toBe(true);
    expect(parseResponses(client.bytes, [], true).responses.map((r) => [r.status, r.isComplete])).toEqual([[200, true]]);
    expect(client.endEvents).toEqual(["eof"]);
  }, 10_000);

  test("three requests in one write → three responses in order", async () => {
    const { port } = serve(pathApp);
    const r = await exchange(port, get("/one") + `POST /two HTTP/1.1\r\n${HOST}Content-Length: 5\r\n\r\nhello` + get("/three"), { count: 3 });
    expect(r.responses.map((x) => x.body.toString())).toEqual(["/one", "/two:hello", "/three"]);
    expect(parseResponses(r.bytes).rest.length).toBe(0);
  });

  test("pipelined responses stay in order when the first app answer is slow", async () => {
    const { port } = serve(pathApp);
    const r = await exchange(port, get("/slow") + get("/b") + get("/c"), { count: 3 });
    expect(r.responses.map((x) => x.body.toString())).toEqual(["/slow", "/b", "/c"]);
  });

  // RFC 9112 §9.6: a client's half-close says it sends no more; what it already sent is still answered.
  test("a client that half-closes after pipelined requests gets every answer, then the close", async () => {
    const { port } = serve(pathApp);
    const client = await RawClient.connect(port);
    client.write(get("/slow") + get("/b"));
    client.end();
    expect(await client.waitForClose(3000)).toBe(true);
    expect(client.responses().map((r) => r.body.toString())).toEqual(["/slow", "/b"]);
  });

  test("a client that half-closes while a large response is still being written gets all of it", async () => {
    const size = 8 * 1024 * 1024;
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      return [Buffer.alloc(size, 0x61)];
    });
    const client = await RawClient.connect(port);
    client.write(get("/"));
    expect(await client.waitUntil(() => client.byteCount > 0)).toBe(true);
    client.socket.pause(); // the server's send buffer fills; the rest waits in the server
    await sleep(100);
    client.end();
    await sleep(300);
    client.socket.resume();
    expect(await client.waitForClose(5000)).toBe(true);
    const [res] = client.responses();
    expect(res.isComplete).toBe(true);
    expect(res.body.length).toBe(size);
  });
});

// ==== Expect, rejections, errors ====

describe("Expect: 100-continue", () => {
  test("the client sends the head only, gets 100 Continue, then sends the body and gets the final response", async () => {
    const { port } = serve(pathApp);
    const client = await RawClient.connect(port);
    client.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
    expect(await client.waitUntil(() => client.text.includes("\r\n\r\n"), 2000)).toBe(true);
    expect(client.text).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    client.write("hello");
    const responses = await client.readResponses(1);
    expect(client.text.startsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([100, 200]);
    expect(responses[1].body.toString()).toBe("/up:hello");
  });

  test("no 100 Continue for an HTTP/1.0 request or a request without a body", async () => {
    const { port } = serve(pathApp);
    let r = await exchange(port, "POST /ten HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
    expect(r.text).not.toContain("100 Continue");
    expect(r.responses[0].body.toString()).toBe("/ten:hi");
    r = await exchange(port, `POST /empty HTTP/1.1\r\n${HOST}Content-Length: 0\r\nExpect: 100-continue\r\n\r\n`);
    expect(r.text).toStartWith("HTTP/1.1 200 OK\r\n");
    expect(r.responses[0].body.toString()).toBe("/empty:");
  });

  test("the 100 Continue of a pipelined request goes out after the previous response, intact", async () => {
    const size = 16 * 1024 * 1024; // more than a socket send buffer takes at once
    const { port } = serve((environ, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      if (environ.REQUEST_METHOD === "POST") return [Buffer.from(environ["wsgi.input"].read())];
      return [Buffer.alloc(size, 0x61)];
    });
    const client = await RawClient.connect(port);
    client.write(get("/big") + `POST /up HTTP/1.1\r\n${HOST}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
    const hasContinue = () => client.byteCount > size && client.responses().length >= 2;
    await client.waitUntil(hasContinue, 3000);
    client.write("hello"); // as curl does when no 100 comes: send the body anyway
    const responses = await client.readResponses(2, [], 5000);
    expect(responses.map((r) => r.status)).toEqual([200, 100, 200]);
    expect(responses[0].body.length).toBe(size);
    expect(responses[0].body.indexOf("HTTP/1.1")).toBe(-1);
    expect(responses[2].body.toString()).toBe("hello");
  });

  test("an unsupported expectation → 417 and close", async () => {
    const { port } = serve(pathApp);
    const r = await exchange(port, `POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nExpect: something-else\r\n\r\n`);
    expect(r.responses[0].statusLine).toBe("HTTP/1.1 417 Expectation Failed");
    expect(r.isClosed).toBe(true);
  });
});

describe("rejected requests and app errors", () => {
  test("a bare LF → 400 and close; bytes after it are never answered", async () => {
    let calls = 0;
    const { port } = serve((env, start) => { calls++; return pathApp(env, start); });
    const r = await exchange(port, `GET /bad HTTP/1.1\n${HOST}\r\n` + get("/after"), { count: 2 });
    expect(r.isClosed).toBe(true);
    expect(r.responses.length).toBe(1);
    expect(r.responses[0].statusLine).toBe("HTTP/1.1 400 Bad Request");
    expect(header(r.responses[0], "Connection")).toBe("close");
    expect(calls).toBe(0);
  });

  test("a good request then a bad one on the same connection: the first is answered, then 400 and close", async () => {
    const { port } = serve(pathApp);
    const r = await exchange(port, get("/ok") + "GET /bad HTTP/1.1\r\nHost: t\nX: y\r\n\r\n" + get("/never"), { count: 3 });
    expect(r.responses.map((x) => x.status)).toEqual([200, 400]);
    expect(r.isClosed).toBe(true);
    expect(r.text).not.toContain("/never");
  });

  test("CONNECT → 501 from the front before any app runs, TypeScript or Python: no 2xx can open a tunnel (RFC 9110 §9.3.6)", async () => {
    const connect = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let calls = 0;
    const { port } = serve((_env, start) => {
      calls++;
      start("200 OK", [["Content-Type", "text/plain"]]);
      return ["tunnel?"];
    });
    const python = await startPy("test/pyapps/probe.py", ["-w", "1"]);
    try {
      for (const p of [port, python.port]) {
        const r = await exchange(p, connect + get("/after"), { count: 2 });
        expect(r.responses.map((res) => res.statusLine)).toEqual(["HTTP/1.1 501 Not Implemented"]);
        expect(header(r.responses[0], "Connection")).toBe("close");
        expect(r.isClosed).toBe(true);
      }
      expect(calls).toBe(0);
    } finally {
      await stopPy(python);
    }
  }, 30_000);

  test("an exception before start_response → 500 with a short body, no traceback", async () => {
    const { port } = serve(() => { throw new Error("boom-marker"); });
    const r = await exchange(port, get("/"));
    const res = r.responses[0];
    expect(res.statusLine).toBe("HTTP/1.1 500 Internal Server Error");
    expect(res.body.toString()).toBe("Internal Server Error\n");
    expect(header(res, "Content-Length")).toBe(String(res.body.length));
    expect(r.text).not.toContain("boom-marker");
    expect(r.isClosed).toBe(true);
  });

  test("exposeTracebacks: true puts the error and its stack in the 500 body", async () => {
    const { port } = serve(() => { throw new Error("boom-marker"); }, { exposeTracebacks: true });
    const r = await exchange(port, get("/"));
    const body = r.responses[0].body.toString();
    expect(r.responses[0].status).toBe(500);
    expect(body).toContain("boom-marker");
    expect(body).toMatch(/\n\s+at /);
  });

  test("a HEAD request that fails → 500 headers, no body", async () => {
    const { port } = serve(() => { throw new Error("boom"); });
    const client = await RawClient.connect(port);
    client.write(`HEAD / HTTP/1.1\r\n${HOST}\r\n`);
    expect(await client.waitForClose()).toBe(true);
    const { responses, rest } = parseResponses(client.bytes, ["HEAD"], true);
    expect(responses[0].status).toBe(500);
    expect(rest.length).toBe(0);
  });
});

// ==== async apps ====

describe("async apps", () => {
  test("a Promise of an array body", async () => {
    const { port } = serve(async (_env, start) => {
      await sleep(5);
      start("200 OK", [["Content-Type", "text/plain"]]);
      return ["async ", "body"];
    });
    const r = await exchange(port, get("/"));
    expect(header(r.responses[0], "Content-Length")).toBe("10");
    expect(r.responses[0].body.toString()).toBe("async body");
  });

  test("an async generator body is sent chunked, chunk for chunk", async () => {
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return (async function* () {
        yield "one";
        await sleep(5);
        yield new TextEncoder().encode("two!");
      })();
    });
    const r = await exchange(port, get("/"));
    expect(r.responses[0].rawBody.toString()).toBe("3\r\none\r\n4\r\ntwo!\r\n0\r\n\r\n");
  });

  test("a rejected Promise before start_response → 500", async () => {
    const { port } = serve(async () => {
      await sleep(5);
      throw new Error("async boom");
    });
    const r = await exchange(port, get("/"));
    expect(r.responses[0].statusLine).toBe("HTTP/1.1 500 Internal Server Error");
    expect(r.text).not.toContain("async boom");
  });
});

// ==== close() ====

describe("close() of the app's body is called exactly once", () => {
  /** An iterable with close(), counting calls, from a chunk source. */
  function closable(source: () => Iterator<string | Uint8Array>) {
    const counts = { close: 0, pullsAfterClose: 0 };
    const it = source();
    const body = {
      [Symbol.iterator]() {
        return { next: () => { if (counts.close > 0) counts.pullsAfterClose++; return it.next(); } };
      },
      close() { counts.close++; },
    };
    return { body, counts };
  }

  test("on normal end", async () => {
    const made: ReturnType<typeof closable>[] = [];
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      const c = closable(function* () { yield "a"; yield "b"; });
      made.push(c);
      return c.body;
    });
    const arrayCloses = { n: 0 };
    const r = await exchange(port, get("/"));
    expect(r.responses[0].rawBody.toString()).toBe("1\r\na\r\n1\r\nb\r\n0\r\n\r\n");
    await sleep(20);
    expect(made[0].counts.close).toBe(1);

    const arrayServer = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      return Object.assign(["x"], { close: () => { arrayCloses.n++; } });
    });
    await exchange(arrayServer.port, get("/"));
    await sleep(20);
    expect(arrayCloses.n).toBe(1);
  });

  test("when the body iterator throws", async () => {
    const made: ReturnType<typeof closable>[] = [];
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "text/plain"]]);
      const c = closable(function* () { yield "a"; throw new Error("iteration failed"); });
      made.push(c);
      return c.body;
    });
    const r = await exchange(port, get("/"));
    expect(r.isClosed).toBe(true);
    await sleep(20);
    expect(made[0].counts.close).toBe(1);
  });

  test("when the client disconnects mid-stream (sync iterator): close once, no pulls after it", async () => {
    const made: ReturnType<typeof closable>[] = [];
    const started = deferred();
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      const c = closable(function* () { for (;;) yield new Uint8Array(64 * 1024); });
      made.push(c);
      started.resolve();
      return c.body;
    });
    const client = await RawClient.connect(port);
    client.write(get("/"));
    await started.promise;
    expect(await client.waitUntil(() => client.byteCount > 256 * 1024)).toBe(true);
    client.destroy();
    const counts = made[0].counts;
    const deadline = Date.now() + 3000;
    while (counts.close === 0 && Date.now() < deadline) await sleep(20);
    await sleep(100);
    expect(counts.close).toBe(1);
    expect(counts.pullsAfterClose).toBe(0);
  });

  test("when the client disconnects mid-stream (async iterator)", async () => {
    const counts = { close: 0 };
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      const gen = (async function* () { for (;;) { await sleep(1); yield new Uint8Array(64 * 1024); } })();
      return Object.assign(gen, { close() { counts.close++; } });
    });
    const client = await RawClient.connect(port);
    client.write(get("/"));
    expect(await client.waitUntil(() => client.byteCount > 256 * 1024)).toBe(true);
    client.destroy();
    const deadline = Date.now() + 3000;
    while (counts.close === 0 && Date.now() < deadline) await sleep(20);
    await sleep(100);
    expect(counts.close).toBe(1);
  });
});
