// The connection's life (server.ts section "Keep-alive, close, timeouts"), over real sockets
// with TypeScript apps: keep-alive by version and Connection, pipelining in order, half-closes,
// Expect: 100-continue, how a rejected request ends the connection, the header and keep-alive
// timers, FIN for what is over and RST only for an answer cut short, maxConnections, and
// graceful stop.
import { afterEach, describe, expect, test } from "bun:test";
import { RawClient, cleanUp, deferred, exchange, header, parseResponses, pathApp, serve, sleep, HOST, countingEchoApp, get } from "./helpers.ts";
import { startPy, stopPy } from "./pyhelpers.ts";

afterEach(cleanUp);

const echo = countingEchoApp();
const echoApp = echo.app;

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
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    client.write(get("/one", "Connection: close\r\n") + get("/two"));
    expect(await client.waitForEnd()).toBe(true);
    // A pipelining client may still be sending when the server's FIN comes: those bytes must not reset the connection.
    client.write(get("/three"));
    // Give a reset the time to come back before we half-close (a reset is what must never come).
    await client.waitUntil(() => client.endEvents.length > 1, 500);
    client.end();
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
    const client = await RawClient.connect(server.port, { allowHalfOpen: true }); // it does not answer a FIN with its own
    client.write(get("/one", "Connection: close\r\n"));
    expect(await client.waitForEnd()).toBe(true); // our FIN: lingering now
    const isStopped = await Promise.race([server.stop(true).then(() => true), sleep(6000).then(() => false)]);
    expect(isStopped).toBe(true);
    expect(parseResponses(client.bytes, [], true).responses.map((r) => [r.status, r.isComplete])).toEqual([[200, true]]);
    expect(client.endEvents).toEqual(["eof"]);
  }, 10_000);

  test("--keep-alive 0 is keep-alive off (gunicorn): Connection: close, and a pipelined request is not served", async () => {
    const { port } = serve(pathApp, { keepAliveS: 0 });
    const r = await exchange(port, get("/one") + get("/two"));
    expect(r.responses.map((res) => [res.status, res.body.toString(), header(res, "connection")])).toEqual([[200, "/one", "close"]]);
    expect(r.isClosed).toBe(true);
  });

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
    client.pause(); // the server's send buffer fills; the rest waits in the server
    await sleep(100);
    client.end();
    await sleep(300);
    client.resume();
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

// ==== rejected requests ====

describe("rejected requests: answered, then the connection closes", () => {
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
});

// ==== timers, closing, connections ====

describe("timeouts", () => {
  test("headerTimeoutS: half a head → 408 and close", async () => {
    const { port } = serve(echoApp, { headerTimeoutS: 0.5 });
    const client = await RawClient.connect(port);
    client.write("GET / HTTP/1.1\r\nHo");
    expect(await client.waitForClose(1500)).toBe(true);
    const { responses, rest } = parseResponses(client.bytes, [], true);
    expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 408 Request Timeout"]);
    expect(rest.length).toBe(0);
  });

  test("headerTimeoutS: a head dribbled a byte at a time does not reset the timer", async () => {
    const { port } = serve(echoApp, { headerTimeoutS: 0.5 });
    const client = await RawClient.connect(port);
    const request = get("/", "X-Slow: " + "s".repeat(40) + "\r\n");
    for (let i = 0; i < request.length - 2 && !client.isDone; i++) {
      client.write(request[i]);
      await sleep(50);
    }
    expect(client.isDone).toBe(true);
    expect(client.responses()[0]?.statusLine).toBe("HTTP/1.1 408 Request Timeout");
  });

  test("headerTimeoutS also bounds a gap in the request body → 408 and close; the app never runs", async () => {
    const { port } = serve(echoApp, { headerTimeoutS: 0.5 });
    echo.calls = 0;
    const client = await RawClient.connect(port);
    client.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\n012`);
    expect(await client.waitForClose(1500)).toBe(true);
    expect(client.responses().map((r) => r.statusLine)).toEqual(["HTTP/1.1 408 Request Timeout"]);
    expect(echo.calls).toBe(0);
  });

  test("keepAliveS: an idle kept-alive connection is closed without another byte", async () => {
    const { port } = serve(echoApp, { keepAliveS: 0.5 });
    const client = await RawClient.connect(port);
    client.write(get("/one"));
    const [res] = await client.readResponses(1);
    expect(res.body.toString()).toBe("/one:");
    const before = client.byteCount;
    expect(await client.waitForClose(2000)).toBe(true);
    expect(client.byteCount).toBe(before);
  });

  test("keepAliveS does not cut a response the client is still reading", async () => {
    const size = 8 * 1024 * 1024;
    const { port } = serve((_env, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      return [Buffer.alloc(size, 0x61)];
    }, { keepAliveS: 0.5 });
    const client = await RawClient.connect(port);
    client.write(get("/"));
    expect(await client.waitUntil(() => client.byteCount > 1024 * 1024)).toBe(true);
    client.pause(); // a slow reader: longer than keepAliveS without reading
    await sleep(1500);
    client.resume();
    await client.waitUntil(() => client.isDone || client.byteCount >= size, 5000);
    const { responses } = parseResponses(client.bytes, [], client.isDone);
    expect(responses[0].isComplete).toBe(true);
    expect(responses[0].body.length).toBe(size);
  });
});

describe("closing: FIN for what is over, RST only for an answer cut short", () => {
  test("a client's FIN inside a request head closes the connection at once (long before headerTimeoutS), nothing answered", async () => {
    const { port } = serve(echoApp, { headerTimeoutS: 60 });
    echo.calls = 0;
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    client.write("GET / HTTP/1.1\r\nHost: t\r\nX-Part");
    client.end();
    expect(await client.waitForEnd()).toBe(true);
    expect(client.endEvents).toEqual(["eof"]);
    expect(client.bytes.length).toBe(0);
    expect(echo.calls).toBe(0);
  });

  test("headerTimeoutS: complete head lines then silence → 408, then a clean close (FIN)", async () => {
    const { port } = serve(echoApp, { headerTimeoutS: 0.5 });
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    client.write("GET / HTTP/1.1\r\nHost: t\r\n");
    expect(await client.waitForEnd()).toBe(true);
    const { responses, rest } = parseResponses(client.bytes, [], true);
    expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 408 Request Timeout"]);
    expect(rest.length).toBe(0);
    expect(client.endEvents).toEqual(["eof"]);
  });

  test("headerTimeoutS on a connection that never sent a byte: closed with FIN, nothing sent", async () => {
    const { port } = serve(echoApp, { headerTimeoutS: 0.5 });
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    expect(await client.waitForEnd()).toBe(true);
    expect(client.endEvents).toEqual(["eof"]);
    expect(client.bytes.length).toBe(0);
  });

  test("keepAliveS: an idle kept-alive connection is closed with FIN, not reset", async () => {
    const { port } = serve(echoApp, { keepAliveS: 0.5 });
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    client.write(get("/one"));
    expect(await client.waitUntil(() => parseResponses(client.bytes).responses.length === 1)).toBe(true);
    const before = client.bytes.length;
    expect(await client.waitForEnd()).toBe(true);
    expect(client.endEvents).toEqual(["eof"]);
    expect(client.bytes.length).toBe(before);
  });

  test("413 from the head while the client keeps sending its body: the whole 413, then a clean EOF, never a reset", async () => {
    const { port } = serve(echoApp, { limitRequestBody: 1024 });
    echo.calls = 0;
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    const piece = Buffer.alloc(64 * 1024, 0x62);
    const maxBodyBytes = 8 * 1024 * 1024;
    client.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: ${64 * 1024 * 1024}\r\n\r\n`);
    // Keep writing the body (as a client that does not read while it sends would) until the server's FIN.
    let sent = 0;
    while (sent < maxBodyBytes && client.endEvents.length === 0) {
      sent += piece.length;
      client.write(piece);
      if (client.pendingWriteBytes > 0) await client.waitUntil(() => client.endEvents.length > 0 || client.pendingWriteBytes === 0);
    }
    expect(await client.waitForEnd()).toBe(true);
    client.end();
    expect(await client.waitUntil(() => client.isClosed)).toBe(true);
    const { responses, rest } = parseResponses(client.bytes, [], true);
    expect(responses.map((r) => [r.statusLine, r.isComplete])).toEqual([["HTTP/1.1 413 Content Too Large", true]]);
    expect(rest.length).toBe(0);
    expect(client.endEvents).toEqual(["eof"]);
    expect(echo.calls).toBe(0);
  });
});

describe("connections", () => {
  test("maxConnections: 1 → a second connection is not served until the first closes, then it is", async () => {
    const { port } = serve(echoApp, { maxConnections: 1 });
    const first = await RawClient.connect(port);
    first.write(get("/first"));
    expect((await first.readResponses(1))[0].body.toString()).toBe("/first:");
    const second = await RawClient.connect(port);
    second.write(get("/second"));
    await sleep(400);
    expect(second.byteCount).toBe(0);
    first.destroy();
    const [res] = await second.readResponses(1);
    expect(res?.body.toString()).toBe("/second:");
  });

  test("graceful stop: the in-flight request completes, new connections are refused", async () => {
    const started = deferred();
    const server = serve(async (environ, start) => {
      if (environ.PATH_INFO === "/slow") {
        started.resolve();
        await sleep(400);
      }
      start("200 OK", [["Content-Type", "text/plain"]]);
      return ["done " + environ.PATH_INFO];
    });
    const idle = await RawClient.connect(server.port);
    idle.write(get("/idle"));
    await idle.readResponses(1);
    const slow = await RawClient.connect(server.port);
    slow.write(get("/slow"));
    await started.promise;
    const stopped = server.stop();
    // An idle kept-alive connection is closed at once.
    expect(await idle.waitForClose(1000)).toBe(true);
    // The listener is closed: a new connection is refused.
    const late = await RawClient.connect(server.port).then(
      (c) => { c.write(get("/late")); return c.waitForClose(1000).then(() => `connected, got ${JSON.stringify(c.text)}`); },
      (err: Error) => `refused (${(err as any).code ?? err.message})`,
    );
    expect(late).toStartWith("refused");
    expect(await slow.waitForClose(3000)).toBe(true);
    const responses = slow.responses();
    expect(responses.length).toBe(1);
    expect(responses[0].isComplete).toBe(true);
    expect(responses[0].body.toString()).toBe("done /slow");
    expect(header(responses[0], "Connection")).toBe("close");
    await stopped;
  });

  test("graceful stop while a finished response is still being written: the client gets all of it", async () => {
    const size = 8 * 1024 * 1024;
    const server = serve((_env, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      return [Buffer.alloc(size, 0x61)];
    });
    const client = await RawClient.connect(server.port);
    client.write(get("/"));
    expect(await client.waitUntil(() => client.byteCount > 1024 * 1024)).toBe(true);
    client.pause(); // the app is done; the rest of its body waits in the server
    await sleep(200);
    const stopped = server.stop();
    await sleep(200);
    client.resume();
    expect(await client.waitForClose(5000)).toBe(true);
    const { responses } = parseResponses(client.bytes, [], true);
    expect(responses[0].isComplete).toBe(true);
    expect(responses[0].body.length).toBe(size);
    await stopped;
  });
});
