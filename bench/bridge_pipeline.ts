// Micro-benchmark of the front's share of a Python request (parse → environ → REQ frame →
// RESPONSE frame → serialize), no sockets: real workers boot, then each one's data channel
// is swapped for a fake that answers every REQ at once with a canned RESPONSE, the way
// worker.py frames "Hello, World!". What is left is the front's JavaScript and its garbage.
// Prints ns per request; compare runs on the same machine only (bench/pipeline.ts is the
// same for a TypeScript app).
// Usage: bun bench/bridge_pipeline.ts [requests] [connections]
import { Conn, defaultConfig, LineSink, Logger, startServer, type Config } from "../server.ts";
import { createPythonStage, encodeFrame, FRAME, FRAME_HEADER_BYTES } from "../bridge.ts";


const requests = Number(process.argv[2] ?? 300_000);
const connections = Number(process.argv[3] ?? 50);
const config: Config = { ...defaultConfig(), app: "apps/bench_apps.py:hello", workers: 2, threads: 1, python: process.env.PYTHON ?? null, binds: ["127.0.0.1:0"], logLevel: "critical" } as Config;
const log = new Logger(new LineSink(2, false), "critical");
const pool = createPythonStage(config, log);
const running = startServer({ ...config, stage: pool, logger: log, accessLog: null });
await pool.boot();

// -- the fake workers: every REQ gets worker.py's RESPONSE for the hello app --
const HEAD = Buffer.from("200 OK\0Content-Type\0text/plain\0Content-Length\x0013", "latin1");
const HEAD_LENGTH = Buffer.alloc(4);
HEAD_LENGTH.writeUInt32BE(HEAD.length, 0);
const RESPONSE_PAYLOAD = Buffer.concat([HEAD_LENGTH, HEAD, Buffer.from("Hello, World!")]);
let written = 0;
const poolAny = pool as any;
for (const worker of poolAny.workers) {
  const answers: Buffer[] = [];
  worker.data.socket = {
    write(data: Uint8Array) {
      const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
      for (let off = 0; off + FRAME_HEADER_BYTES <= buf.length; off += FRAME_HEADER_BYTES + buf.readUInt32BE(off)) {
        if (buf[off + 4] === FRAME.REQ) answers.push(encodeFrame(FRAME.RESPONSE, buf.readUInt32BE(off + 5), RESPONSE_PAYLOAD));
      }
      if (answers.length > 0) setImmediate(() => {
        if (answers.length > 0) poolAny.onWorkerData(worker, worker.reader, Buffer.concat(answers.splice(0)));
      });
      return data.length;
    },
    end() {}, terminate() {},
  };
}

// -- the clients: fake sockets; like wrk, each sends its next request once its answer came --
const server = running.server;
const conns: Conn[] = [];
const isWaiting: boolean[] = [];
let answered = 0;
let stalledTurns = 0;
for (let i = 0; i < connections; i++) {
  const socket = {
    write(d: string | Uint8Array) {
      written += d.length;
      if (isWaiting[i]) { isWaiting[i] = false; answered++; }
      return d.length;
    },
    end() {}, shutdown() {}, pause() {}, resume() {}, terminate() {}, flush() {}, data: undefined,
  } as any;
  const conn = new Conn(socket, server, { remoteAddr: "127.0.0.1", remotePort: 5555 + i, serverName: "127.0.0.1", serverPort: 8000, scheme: "http", peerAddr: null, peerPort: null, tlsVersion: null, clientSubject: null, isTrustedProxy: null });
  server.conns.add(conn);
  conns.push(conn);
  isWaiting.push(false);
}
const request = Buffer.from("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n");

for (let round = 0; round < 3; round++) {
  const t0 = Bun.nanoseconds();
  answered = 0;
  written = 0;
  while (answered < requests) {
    for (let i = 0; i < conns.length; i++) {
      if (isWaiting[i]) continue;
      isWaiting[i] = true;
      conns[i].onData(Buffer.from(request));
    }
    // one event-loop turn: the REQs go out, the answers come back and are written
    const before = answered;
    await new Promise((r) => setImmediate(r));
    stalledTurns = answered === before ? stalledTurns + 1 : 0;
    if (stalledTurns > 10_000) {
      console.error("bench/bridge_pipeline.ts: no answer for 10,000 turns of the event loop");
      process.exit(1);
    }
  }
  const ns = (Bun.nanoseconds() - t0) / answered;
  const bytesPerAnswer = written / answered;
  console.log(`round ${round + 1}: ${ns.toFixed(0)} ns/request (${bytesPerAnswer.toFixed(0)} bytes per answer)`);
  if (bytesPerAnswer < 100) {
    // less than a hello answer each: something else was written, and the time means nothing
    console.error("bench/bridge_pipeline.ts: the answers are not the app's");
    process.exit(1);
  }
}
await running.stop(false);
await pool.stop(false);
process.exit(0);
