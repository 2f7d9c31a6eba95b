// Writing and backpressure (server.ts section "Write and backpressure"), end to end: an app
// streams 100 MB as a generator of 64 KB chunks to a client that stops reading for seconds
// at a time; the server must stop pulling from the app while the client is not reading, so
// its RSS stays within a bound, and every byte must arrive intact. And a client that never
// reads is dropped after --timeout without progress instead of pinning its unsent body.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { WsgiApp } from "../server.ts";
import { RawClient, cleanUp, exchange, readRssBytes, serve, sleep, spawnServer } from "./helpers.ts";

const CHUNK_BYTES = 64 * 1024;
const CHUNK_COUNT = 1600; // 100 MiB
const TOTAL_BYTES = CHUNK_BYTES * CHUNK_COUNT;
/** RSS above the idle server's that we allow while streaming. */
const RSS_ALLOWANCE_BYTES = 64 * 1024 * 1024;
const PAUSE_MS = 3000;

afterEach(cleanUp);

let dir = "";
let appFile = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bunicorn-stream-"));
  appFile = join(dir, "stream.ts");
  // Chunk i is filled with the byte i % 251, so the client can check every byte.
  writeFileSync(appFile, `export default function app(environ: any, start: any) {
  start("200 OK", [["Content-Type", "application/octet-stream"]]);
  if (environ.PATH_INFO === "/warmup") return ["ok"];
  return (function* () {
    for (let i = 0; i < ${CHUNK_COUNT}; i++) yield new Uint8Array(${CHUNK_BYTES}).fill(i % 251);
  })();
}
`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A streaming decoder of a chunked body that checks each data byte against the app's pattern. */
class CheckingDechunker {
  dataBytes = 0;
  badBytes = 0;
  isTerminated = false;
  private state: "head" | "size" | "data" | "data-crlf" | "trailer" | "done" = "head";
  private line = "";
  private left = 0;
  private headEnd = "";

  feed(buf: Uint8Array): void {
    let i = 0;
    while (i < buf.length) {
      switch (this.state) {
        case "head": {
          this.headEnd += String.fromCharCode(buf[i++]);
          if (this.headEnd.endsWith("\r\n\r\n")) {
            if (!/^HTTP\/1\.1 200 OK\r\n/.test(this.headEnd) || !/\r\nTransfer-Encoding: chunked\r\n/i.test(this.headEnd)) {
              throw new Error(`unexpected head ${JSON.stringify(this.headEnd)}`);
            }
            this.state = "size";
          }
          break;
        }
        case "size":
        case "trailer": {
          this.line += String.fromCharCode(buf[i++]);
          if (!this.line.endsWith("\r\n")) break;
          const text = this.line.slice(0, -2);
          this.line = "";
          if (this.state === "trailer") {
            if (text !== "") throw new Error(`unexpected trailer ${JSON.stringify(text)}`);
            this.state = "done";
            this.isTerminated = true;
            break;
          }
          if (!/^[0-9a-f]+$/i.test(text)) throw new Error(`bad chunk size ${JSON.stringify(text)}`);
          this.left = parseInt(text, 16);
          this.state = this.left === 0 ? "trailer" : "data";
          break;
        }
        case "data": {
          const n = Math.min(this.left, buf.length - i);
          for (let k = 0; k < n; k++) {
            const offset = this.dataBytes + k;
            if (buf[i + k] !== Math.floor(offset / CHUNK_BYTES) % 251) this.badBytes++;
          }
          this.dataBytes += n;
          this.left -= n;
          i += n;
          if (this.left === 0) this.state = "data-crlf";
          break;
        }
        case "data-crlf": {
          this.line += String.fromCharCode(buf[i++]);
          if (this.line.length === 2) {
            if (this.line !== "\r\n") throw new Error("chunk data not followed by CRLF");
            this.line = "";
            this.state = "size";
          }
          break;
        }
        case "done":
          throw new Error("bytes after the end of the response");
      }
    }
  }
}

test("100 MB streamed to a slow reader: server RSS stays bounded, all bytes arrive intact", async () => {
  const server = await spawnServer(["-b", "127.0.0.1:0", appFile]);
  const warm = await exchange(server.port, "GET /warmup HTTP/1.1\r\nHost: t\r\n\r\n");
  expect(warm.responses[0].body.toString()).toBe("ok");
  await sleep(200);
  const baseline = readRssBytes(server.pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, readRssBytes(server.pid));
    } catch {
      // the process is gone: the assertions below say so
    }
  }, 50);

  try {
    const dechunker = new CheckingDechunker();
    const client = await RawClient.connect(server.port);
    client.keepData = false;
    let decodeError: unknown = null;
    client.onData = (data) => {
      try {
        dechunker.feed(data);
      } catch (err) {
        decodeError ??= err;
      }
    };
    client.write("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");

    // Stop reading twice: early, and half way.
    for (const mark of [8 * 1024 * 1024, TOTAL_BYTES / 2]) {
      expect(await client.waitUntil(() => client.byteCount >= mark, 20_000)).toBe(true);
      client.pause();
      await sleep(50);
      const whilePaused = client.byteCount;
      await sleep(PAUSE_MS);
      // The pause held: the client took (almost) nothing meanwhile.
      expect(client.byteCount - whilePaused).toBeLessThan(1024 * 1024);
      client.resume();
    }

    expect(await client.waitUntil(() => dechunker.isTerminated || client.isDone || decodeError !== null, 30_000)).toBe(true);
    expect(decodeError).toBeNull();
    expect(dechunker.isTerminated).toBe(true);
    expect(dechunker.dataBytes).toBe(TOTAL_BYTES);
    expect(dechunker.badBytes).toBe(0);
    expect(client.isDone).toBe(false); // a complete chunked response keeps the connection
    expect(peak - baseline).toBeLessThan(RSS_ALLOWANCE_BYTES);
  } finally {
    clearInterval(sampler);
  }
}, 60_000);

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
  // (That the keep-alive timer alone does not cut a response being read is a connection test.)
  for (let i = 0; i < 200 && server.server.conns.size > 0; i++) await sleep(50);
  expect(client.byteCount).toBeLessThan(64 * chunk.length);
  expect(server.server.conns.size).toBe(0);
  client.destroy();
}, 15_000);
