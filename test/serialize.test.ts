// Serializing the app's response (server.ts section "Serialize the response"), over real
// sockets with TypeScript apps: status line and headers as given, Content-Length or chunked
// or close-delimited bodies, no body for HEAD/204/304, latin-1 header values, Date and
// Server, hop-by-hop headers owned by the server, and write() before the returned body.
import { afterEach, describe, expect, test } from "bun:test";
import { SERVER_HEADER } from "../server.ts";
import { HOST, RawClient, cleanUp, exchange, get, header, headerValues, parseResponses, pathApp, serve } from "./helpers.ts";

afterEach(cleanUp);

const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

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
