// What happens to a response whose client stops: the app's generator is finalized, and a
// client that stops reading is eventually dropped instead of pinning its unsent body.
import { afterEach, expect, test } from "bun:test";
import type { WsgiApp } from "../server.ts";
import { cleanUp, serve, sleep } from "./helpers.ts";

afterEach(cleanUp);

function connectRaw(port: number, request: string, onData: (b: Buffer) => void = () => {}) {
  return Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: { data: (_s, b) => onData(b), open: (s) => { s.write(request); } },
  });
}

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
    let received = 0;
    const socket = await connectRaw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", (b) => { received += b.length; });
    while (received < 256 * 1024) await sleep(5);
    socket.terminate();
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
  let received = 0;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: server.port,
    socket: {
      data: (_s, b) => { received += b.length; },
      // Paused before the request goes out: we read nothing, so most of the 64 MB stay unsent.
      open: (s) => { s.pause(); s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); },
    },
  });
  // (That the keep-alive timer alone does not cut a response being read is a limits test.)
  for (let i = 0; i < 200 && server.server.conns.size > 0; i++) await sleep(50);
  expect(received).toBeLessThan(64 * chunk.length);
  expect(server.server.conns.size).toBe(0);
  socket.terminate();
}, 15_000);
