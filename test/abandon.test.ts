// What happens to a response whose client stops: the app's generator is finalized, and a
// client that stops reading is eventually dropped instead of pinning its unsent body.
import { afterEach, expect, test } from "bun:test";
import type { WsgiApp } from "../server.ts";
import { RawClient, cleanUp, serve, sleep } from "./helpers.ts";

afterEach(cleanUp);

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

test("a client that stops reading is closed after --timeout without progress, not kept forever", async () => {
  const chunk = new Uint8Array(1024 * 1024).fill(97);
  const app: WsgiApp = (_env, start) => {
    start("200 OK", [["Content-Length", String(64 * chunk.length)]]);
    return Array.from({ length: 64 }, () => chunk); // one array: all of it is written at once
  };
  const server = serve(app, { keepAliveS: 0.3, timeoutS: 1 });
  const client = await RawClient.connect(server.port);
  client.keepData = false;
  // Paused before the request goes out: we read nothing, so most of the 64 MB stay unsent.
  client.pause();
  client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  // (That the keep-alive timer alone does not cut a response being read is a limits test.)
  for (let i = 0; i < 200 && server.server.conns.size > 0; i++) await sleep(50);
  expect(client.byteCount).toBeLessThan(64 * chunk.length);
  expect(server.server.conns.size).toBe(0);
  client.destroy();
}, 15_000);
