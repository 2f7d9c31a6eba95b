// Real frameworks served by bunicorn over real sockets: one Flask app and one
// single-file Django project (test/pyapps), each through the same list of
// checks (routing with a path parameter, JSON, urlencoded form, a 10 MiB
// multipart upload, a streamed response, cookies, a redirect, 404, and an
// exception answered 500). Then an app wrapped in wsgiref.validate's
// validator, with warnings as errors, across GET, HEAD, POST with
// Content-Length, chunked POST, write() and a streamed body: the validator must
// find nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawClient, cleanUp, exchange, header, headerValues } from "./helpers.ts";
import { PYAPPS, type PyServer, bodyText, fileText, request, startPy, stopPy } from "./pyhelpers.ts";

const FRAMEWORKS = [
  { name: "Flask", app: "flask_app:app", args: ["-w", "1", "--threads", "2"] },
  { name: "Django", app: "django_app:application", args: ["-w", "2"] },
] as const;

/** Stop with SIGTERM: exit 0 and no worker left. */
async function stopCleanly(server: PyServer | undefined): Promise<void> {
  if (server === undefined) return;
  const { code, survivors } = await stopPy(server, "SIGTERM");
  await cleanUp();
  expect(code).toBe(0);
  expect(survivors).toEqual([]);
}

function multipartBody(boundary: string, note: string, fileName: string, data: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\n${note}\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${fileName}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    data,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}

for (const fw of FRAMEWORKS) {
  describe(fw.name, () => {
    let server: PyServer | undefined;
    let port = 0;
    beforeAll(async () => {
      server = await startPy(fw.app, ["--chdir", PYAPPS, ...fw.args]);
      port = server.port;
    }, 30_000);
    afterAll(() => stopCleanly(server), 20_000);

    test("routing with a path parameter (percent-encoded UTF-8 in the path)", async () => {
      const res = await request(port, "/hello/w%C3%B6rld");
      expect(res.status).toBe(200);
      expect(bodyText(res)).toBe("Hello, wörld!");
    }, 15_000);

    test("JSON in and out", async () => {
      const res = await request(port, "/json", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: Buffer.from(JSON.stringify({ n: 21, s: "ünï ✓" })),
      });
      expect(res.status).toBe(200);
      expect(header(res, "content-type")).toStartWith("application/json");
      expect(JSON.parse(bodyText(res))).toEqual({ received: { n: 21, s: "ünï ✓" }, doubled: 42 });
    }, 15_000);

    test("urlencoded form POST", async () => {
      const res = await request(port, "/form", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "a=1&b=two+words&b=second&c=%E2%9C%93",
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(bodyText(res))).toEqual({ a: ["1"], b: ["two words", "second"], c: ["✓"] });
    }, 15_000);

    test("a 10 MiB multipart upload: the app answers its size and sha256", async () => {
      const data = randomBytes(10 * 1024 * 1024);
      const boundary = "----bunicornBoundary7MA4YWxkTrZu0gW";
      const res = await request(port, "/upload", {
        method: "POST",
        headers: { "Content-Type": `multipart/form-data; boundary=${boundary}` },
        body: multipartBody(boundary, "a note", "data.bin", data),
        timeoutMs: 20_000,
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(bodyText(res))).toEqual({
        name: "data.bin", size: data.length, sha256: createHash("sha256").update(data).digest("hex"), note: "a note",
      });
    }, 30_000);

    test("a streamed response arrives chunked and whole", async () => {
      const res = await request(port, "/stream?who=me");
      expect(res.status).toBe(200);
      expect(res.framing).toBe("chunked");
      expect(header(res, "content-length")).toBeUndefined();
      expect(bodyText(res)).toBe("start me\nchunk 0\nchunk 1\nchunk 2\nend\n");
    }, 15_000);

    test("cookies set, then sent back and read", async () => {
      const set = await request(port, "/cookie/set");
      expect(set.status).toBe(200);
      const cookies = headerValues(set, "set-cookie");
      expect(cookies.length).toBe(2);
      expect(cookies.find((c) => c.startsWith("flavor="))).toStartWith("flavor=chocolate-chip");
      expect(cookies.find((c) => c.startsWith("count="))).toMatch(/^count=42;.*HttpOnly/i);
      const jar = cookies.map((c) => c.split(";")[0]).join("; ");
      const get = await request(port, "/cookie/get", { headers: { Cookie: jar } });
      expect(JSON.parse(bodyText(get))).toEqual({ flavor: "chocolate-chip", count: "42" });
      // Two Cookie fields are joined with "; " (RFC 6265 §5.4), so the app still sees both.
      const split = await exchange(port, "GET /cookie/get HTTP/1.1\r\nHost: t\r\nCookie: flavor=a\r\nCookie: count=7\r\nConnection: close\r\n\r\n");
      expect(JSON.parse(bodyText(split.responses[0]))).toEqual({ flavor: "a", count: "7" });
    }, 15_000);

    test("a redirect: 302 with Location, which then answers", async () => {
      const res = await request(port, "/redirect");
      expect(res.status).toBe(302);
      const location = header(res, "location")!;
      expect(location).toBe("/hello/redirected");
      expect(bodyText(await request(port, location))).toBe("Hello, redirected!");
    }, 15_000);

    test("an unknown path is 404", async () => {
      expect((await request(port, "/no/such/page")).status).toBe(404);
    }, 15_000);

    test("an exception in a view is 500, logged, and the worker keeps serving", async () => {
      const res = await request(port, "/boom");
      expect(res.status).toBe(500);
      expect((await request(port, "/hello/again")).status).toBe(200);
    }, 15_000);
  });
}

describe("wsgiref.validate", () => {
  let server: PyServer | undefined;
  let dir = "";
  let log = "";
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bunicorn-validate-"));
    log = join(dir, "validator.log");
    server = await startPy("validated", ["--chdir", PYAPPS, "-w", "1"], { env: { VALIDATOR_LOG: log } });
  }, 30_000);
  afterAll(async () => {
    await stopCleanly(server);
    rmSync(dir, { recursive: true, force: true });
  }, 20_000);

  const records = () => fileText(log).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { where: string; path: string; error: string });

  test("GET, HEAD, POST with Content-Length, chunked POST, write() and a streamed body: no assertion, no warning", async () => {
    const port = server!.port;
    const get = await request(port, "/");
    expect([get.status, bodyText(get)]).toEqual([200, "hello validator"]);

    const head = await request(port, "/", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(header(head, "content-length")).toBe("15");
    expect(head.body.length).toBe(0);

    const post = await request(port, "/echo", { method: "POST", body: "0123456789abcdefghijXYZ" });
    expect(bodyText(post)).toBe("got 23 bytes: 0123456789abcdefghij");

    const chunked = await exchange(port, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    expect(chunked.responses[0]?.status).toBe(200);
    expect(bodyText(chunked.responses[0])).toBe("got 11 bytes: hello world");

    // A bigger chunked body, sent slowly, so it is pulled in pieces.
    const client = await RawClient.connect(port);
    client.write("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (let i = 0; i < 5; i++) {
      client.write(`10000\r\n${String.fromCharCode(97 + i).repeat(0x10000)}\r\n`);
      await Bun.sleep(20);
    }
    client.write("0\r\n\r\n");
    const [big] = await client.readResponses(1, ["POST"], 10_000);
    expect(bodyText(big)).toBe(`got ${5 * 0x10000} bytes: ${"a".repeat(20)}`);

    const written = await request(port, "/write");
    expect(bodyText(written)).toBe("written, returned");

    const stream = await request(port, "/stream");
    expect(stream.framing).toBe("chunked");
    expect(bodyText(stream)).toBe("piece 0\npiece 1\npiece 2\n");

    // Let any __del__ check run, then: nothing recorded, nothing in the error log.
    expect((await request(port, "/")).status).toBe(200);
    await Bun.sleep(200);
    expect(records()).toEqual([]);
    expect(server!.stderr()).not.toMatch(/AssertionError|Warning|garbage collected/);
  }, 30_000);

  test("the recording works: a rule broken on purpose is recorded (and answered 500)", async () => {
    const res = await request(server!.port, "/bad");
    expect(res.status).toBe(500);
    const got = records();
    expect(got.length).toBe(1);
    expect(got[0].where).toBe("call");
    expect(got[0].path).toBe("/bad");
    expect(got[0].error).toContain("No Content-Type header found in headers");
  }, 15_000);
});
