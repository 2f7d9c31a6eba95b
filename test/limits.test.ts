// Size limits (server.ts section "Constants and limits", enforced by the parser) over real
// sockets, each with a small value so the limit is reached in a few bytes: the request line
// (414), the number and size of header fields (431) and the body (413), each refused before
// the app runs and with the connection closed; at the limit, served. (Timeouts are
// connection tests.)
import { afterEach, describe, expect, test } from "bun:test";
import { RawClient, cleanUp, exchange, header, serve, HOST, countingEchoApp, get } from "./helpers.ts";

afterEach(cleanUp);

const echo = countingEchoApp();
const echoApp = echo.app;

/** One exchange that must end in `status` and a closed connection, without the app being called. */
async function expectRejected(port: number, request: string, statusLine: string) {
  echo.calls = 0;
  const r = await exchange(port, request, { count: 2 });
  expect(r.responses.length).toBe(1);
  expect(r.responses[0].statusLine).toBe(statusLine);
  expect(header(r.responses[0], "Connection")).toBe("close");
  expect(r.isClosed).toBe(true);
  expect(echo.calls).toBe(0);
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
    echo.calls = 0;
    const client = await RawClient.connect(port);
    client.write(`POST /up HTTP/1.1\r\n${HOST}Content-Length: 11\r\nExpect: 100-continue\r\n\r\n`);
    expect(await client.waitForClose()).toBe(true);
    const responses = client.responses();
    expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 413 Content Too Large"]);
    expect(client.text).not.toContain("100 Continue");
    expect(echo.calls).toBe(0);
    // At the limit it is served.
    const r = await exchange(port, `POST /up HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\n0123456789`);
    expect(r.responses[0].body.toString()).toBe("/up:0123456789");
  });

  test("a chunked body over limitRequestBody → 413, whether one chunk or the sum passes it", async () => {
    const { port } = serve(echoApp, { limitRequestBody: 10 });
    const head = `POST /up HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n`;
    for (const body of ["b\r\n", "5\r\nhello\r\n6\r\n"]) {
      echo.calls = 0;
      const client = await RawClient.connect(port);
      client.write(head + body); // the over-limit chunk's data is never sent
      expect(await client.waitForClose()).toBe(true);
      const responses = client.responses();
      expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 413 Content Too Large"]);
      expect(header(responses[0], "Connection")).toBe("close");
      expect(echo.calls).toBe(0);
    }
    const r = await exchange(port, head + "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    expect(r.responses[0].body.toString()).toBe("/up:helloworld");
  });
});
