// Micro-benchmark of the front's share of a Python request (parse → environ → REQ frame →
// RESPONSE frame → serialize), no sockets: real workers boot, then each one's data channel
// is swapped for a fake that answers every REQ at once with a canned RESPONSE, the way
// worker.py frames "Hello, World!". What is left is the front's JavaScript and its garbage.
// Prints ns per request; compare runs on the same machine only (bench/pipeline.ts is the
// same for a TypeScript app).
// Usage: bun bench/bridge_pipeline.ts [requests] [connections]
import { Conn, defaultConfig, LineSink, Logger, startServer, type Config } from "../server.ts";
import { createPythonStage, FRAME } from "../bridge.ts";


const requests = Number(process.argv[2] ?? 300_000);
const connections = Number(process.argv[3] ?? 50);
const config: Config = { ...defaultConfig(), app: "apps/bench_apps.py:hello", workers: 2, threads: 1, python: process.env.PYTHON ?? null, binds: ["127.0.0.1:0"], logLevel: "critical" } as Config;
const log = new Logger(new LineSink(2, false), "critical");
const pool = createPythonStage(config, log);
const running = startServer({ ...config, stage: pool, logger: log, accessLog: null });
await pool.boot();

// -- the fake workers: every REQ gets worker.py's RESPONSE for the hello app --
const HEAD = Buffer.from("200 OK\0Content-Type\0text/plain\0Content-Length\x0013", "latin1");
const BODY = Buffer.from("Hello, World!");
function responseFrame(id: number): Buffer {
  const frame = Buffer.allocUnsafe(9 + 4 + HEAD.length + BODY.length);
  frame.writeUInt32BE(4 + HEAD.length + BODY.length, 0);
  frame[4] = FRAME.RESPONSE;
  frame.writeUInt32BE(id, 5);
  frame.writeUInt32BE(HEAD.length, 9);
  HEAD.copy(frame, 13);
  BODY.copy(frame, 13 + HEAD.length);
  return frame;
}
let written = 0;
const poolAny = pool as any;
for (const worker of poolAny.workers) {
  const answers: Buffer[] = [];
  worker.data.socket = {
    write(data: Uint8Array) {
      const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
      for (let off = 0; off + 9 <= buf.length; off += 9 + buf.readUInt32BE(off)) {
        if (buf[off + 4] === FRAME.REQ) answers.push(responseFrame(buf.readUInt32BE(off + 5))); // FRAME.REQ
      }
      if (answers.length > 0) setImmediate(() => {
        const bytes = Buffer.concat(answers.splice(0));
        poolAny.onWorkerData(worker, worker.reader, bytes);
      });
      return data.length;
    },
    end() {}, terminate() {},
  };
}

// -- the clients: fake sockets that count response bytes --
const server = running.server;
const conns: Conn[] = [];
for (let i = 0; i < connections; i++) {
  const socket = {
    write(d: string | Uint8Array) { written += d.length; return d.length; },
    end() {}, shutdown() {}, pause() {}, resume() {}, terminate() {}, flush() {}, data: undefined,
  } as any;
  const conn = new Conn(socket, server, { remoteAddr: "127.0.0.1", remotePort: 5555 + i, serverName: "127.0.0.1", serverPort: 8000, scheme: "http", peerAddr: null, peerPort: null, tlsVersion: null, clientSubject: null, isTrustedProxy: null });
  server.conns.add(conn);
  conns.push(conn);
}
const request = Buffer.from("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n");

for (let round = 0; round < 3; round++) {
  const t0 = Bun.nanoseconds();
  let sent = 0;
  while (sent < requests) {
    for (const conn of conns) conn.onData(Buffer.from(request));
    sent += conns.length;
    // one event-loop turn: the REQs go out, the answers come back and are written
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  const ns = (Bun.nanoseconds() - t0) / sent;
  console.log(`round ${round + 1}: ${ns.toFixed(0)} ns/request (${(written / sent).toFixed(0)} bytes written per request)`);
  written = 0;
}
await running.stop(false);
await pool.stop(false);
process.exit(0);
