// Limits and timeouts over real sockets, each with a small value so the limit
// is reached in a few bytes or half a second.
import { afterEach, describe, expect, test } from "bun:test";
import type { WsgiApp } from "../server.ts";
import { RawClient, cleanUp, deferred, exchange, header, parseResponses, serve, sleep } from "./helpers.ts";

afterEach(cleanUp);

const HOST = "Host: t\r\n";
const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\n${HOST}${extra}\r\n`;

let appCalls = 0;
const echoApp: WsgiApp = (environ, start) => {
  appCalls++;
  const body = Buffer.concat([Buffer.from(environ.PATH_INFO + ":"), Buffer.from(environ["wsgi.input"].read())]);
  start("200 OK", [["Content-Type", "text/plain"]]);
  return [body];
};

/** One exchange that must end in `status` and a closed connection, without the app being called. */
async function expectRejected(port: number, request: string, statusLine: string) {
  appCalls = 0;
  const r = await exchange(port, request, { count: 2 });
  expect(r.responses.length).toBe(1);
  expect(r.responses[0].statusLine).toBe(statusLine);
  expect(header(r.responses[0], "Connection")).toBe("close");
  expect(r.isClosed).toBe(true);
  expect(appCalls).toBe(0);
}

describe("size limits", () => {
  test("request line over limitRequestLine → 414; at the limit → served", async () => {
    const { port } = serve(echoApp, { limitRequestLine: 32 });
    const atLimit = "GET /" + "a".repeat(32 - "GET / HTTP/1.1".length) + " HTTP/1.1";
    expect(atLimit.length).toBe(32);
    let r = await exchange(port, `${atLimit}\r\n${HOST}\r\n`);
    expect(r.responses[0].status).toBe(200);
    await expectRejected(port, `GET /${"a".repeat(40)} HTTP/1.1\r\n${HOST}\r\n` + get("/after"), "HTTP/1.1 414 URI Too Long");
    // Still too long when it arrives without its line end (a client that never sends CRLF).
    const client = await RawClient.connect(port);
    client.write("GET /" + "b".repeat(100));
    expect(await client.waitForClose()).toBe(true);
    expect(client.responses()[0].statusLine).toBe("HTTP/1.1 414 URI Too Long");
  });

  test("more header fields than limitRequestFields → 431; exactly the limit → served", async () => {
    const { port } = serve(echoApp, { limitRequestFields: 3 });
    let r = await exchange(port, get("/", "A: 1\r\nB: 2\r\n"));
    expect(r.responses[0].status).toBe(200);
    await expectRejected(port, get("/", "A: 1\r\nB: 2\r\nC: 3\r\n") + get("/after"), "HTTP/1.1 431 Request Header Fields Too Large");
  });

  test("a header field line over limitRequestFieldSize → 431; at the limit → served", async () => {
    const { port } = serve(echoApp, { limitRequestFieldSize: 30 });
    const atLimit = "X-Long: " + "v".repeat(30 - "X-Long: ".length);
    expect(atLimit.length).toBe(30);
    let r = await exchange(port, get("/", atLimit + "\r\n"));
    expect(r.responses[0].status).toBe(200);
    await expectRejected(port, get("/", atLimit + "v\r\n") + get("/after"), "HTTP/1.1 431 Request Header Fields Too Large");
  });

  test("Content-Length over limitRequestBody → 413 from the head alone (the body is never sent)", async () => {
    const { port } = serve(echoApp, { limitRequestBody: 10 });
    appCalls = 0;
    const client = await RawClient.connect(port);
    client.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: 11\r\nExpect: 100-continue\r\n\r\n`);
    expect(await client.waitForClose()).toBe(true);
    const responses = client.responses();
    expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 413 Content Too Large"]);
    expect(client.text).not.toContain("100 Continue");
    expect(appCalls).toBe(0);
    // At the limit it is served.
    const r = await exchange(port, `POST /up HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\n0123456789`);
    expect(r.responses[0].body.toString()).toBe("/up:0123456789");
  });

  test("a chunked body over limitRequestBody → 413, whether one chunk or the sum passes it", async () => {
    const { port } = serve(echoApp, { limitRequestBody: 10 });
    const head = `POST /up HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n`;
    for (const body of ["b\r\n", "5\r\nhello\r\n6\r\n"]) {
      appCalls = 0;
      const client = await RawClient.connect(port);
      client.write(head + body); // the over-limit chunk's data is never sent
      expect(await client.waitForClose()).toBe(true);
      const responses = client.responses();
      expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 413 Content Too Large"]);
      expect(header(responses[0], "Connection")).toBe("close");
      expect(appCalls).toBe(0);
    }
    const r = await exchange(port, head + "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    expect(r.responses[0].body.toString()).toBe("/up:helloworld");
  });
});

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
    appCalls = 0;
    const client = await RawClient.connect(port);
    client.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\n012`);
    expect(await client.waitForClose(1500)).toBe(true);
    expect(client.responses().map((r) => r.statusLine)).toEqual(["HTTP/1.1 408 Request Timeout"]);
    expect(appCalls).toBe(0);
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
    appCalls = 0;
    const client = await RawClient.connect(port, { allowHalfOpen: true });
    client.write("GET / HTTP/1.1\r\nHost: t\r\nX-Part");
    client.end();
    expect(await client.waitForEnd()).toBe(true);
    expect(client.endEvents).toEqual(["eof"]);
    expect(client.bytes.length).toBe(0);
    expect(appCalls).toBe(0);
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
    appCalls = 0;
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
    expect(appCalls).toBe(0);
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
