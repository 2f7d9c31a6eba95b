// Micro-benchmark of the in-process pipeline (parse → environ → app → serialize), no
// sockets: a fake socket takes every write. Prints ns per request; compare runs of the
// same machine only. Usage: bun bench/pipeline.ts [requests]
import { Conn, Logger, Server, defaultConfig, startServer } from "../server.ts";
import hello from "../apps/hello.ts";

const requests = Number(process.argv[2] ?? 1_000_000);
const running = startServer({ binds: ["127.0.0.1:0"], handler: hello, logLevel: "critical" });
const server: Server = running.server;
let written = 0;
const fakeSocket = {
  write(d: string | Uint8Array) { const n = typeof d === "string" ? d.length : d.length; written += n; return n; },
  end() {}, shutdown() {}, pause() {}, resume() {}, terminate() {}, data: undefined,
} as any;
const conn = new Conn(fakeSocket, server, { remoteAddr: "127.0.0.1", remotePort: 5555, serverName: "127.0.0.1", serverPort: 8000, scheme: "http", peerAddr: null, peerPort: null, tlsVersion: null, clientSubject: null, isTrustedProxy: null });
server.conns.add(conn);
const request = Buffer.from("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n");
for (let round = 0; round < 3; round++) {
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < requests; i++) conn.onData(Buffer.from(request));
  const ns = (Bun.nanoseconds() - t0) / requests;
  console.log(`round ${round + 1}: ${ns.toFixed(0)} ns/request (${written} bytes written)`);
}
await running.stop(false);
void defaultConfig; void Logger;
