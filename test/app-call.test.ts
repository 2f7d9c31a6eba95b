// Calling the app (server.ts section "start_response and the app"), TypeScript apps over real
// sockets: PEP 3333's start_response rules (twice, exc_info before and after the head went
// out), exceptions answered 500, async apps (a Promise, an async generator), and close() of
// the returned body called exactly once, also when the client leaves mid-stream (a
// generator's finally block runs then).
import { afterEach, describe, expect, test } from "bun:test";
import type { WsgiApp } from "../server.ts";
import { RawClient, cleanUp, deferred, exchange, header, parseResponses, serve, sleep } from "./helpers.ts";

afterEach(cleanUp);

const HOST = "Host: t\r\n";
const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\n${HOST}${extra}\r\n`;

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

// ==== app errors ====

describe("app errors", () => {
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

for (const kind of ["sync", "async"] as const) {
  test(`a ${kind} generator body runs its finally block when the client disconnects mid-stream`, async () => {
    let finalized = 0;
    const chunk = new Uint8Array(64 * 1024).fill(120);
    const app: WsgiApp = (_env, start) => {
      start("200 OK", [["Content-Type", "application/octet-stream"]]);
      if (kind === "sync") {
        return (function* () {
          try { for (;;) yield chunk; } finally { finalized++; }
        })();
      }
      return (async function* () {
        try { for (;;) { yield chunk; await sleep(1); } } finally { finalized++; }
      })();
    };
    const server = serve(app);
    const client = await RawClient.connect(server.port);
    client.keepData = false;
    client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(await client.waitUntil(() => client.byteCount >= 256 * 1024)).toBe(true);
    client.destroy();
    for (let i = 0; i < 100 && finalized === 0; i++) await sleep(10);
    expect(finalized).toBe(1);
  });
}
