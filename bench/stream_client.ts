// One timed 100 MiB transfer for the `stream` scenario of bench/run.ts, over raw TCP.
//
//   bun bench/stream_client.ts download PORT PATH BYTES
//       GET PATH; counts the body (not kept) and checks it is BYTES long.
//   bun bench/stream_client.ts upload PORT PATH BYTES
//       POST PATH with Content-Length BYTES, sent in 64 KiB writes that wait for
//       the socket to drain; checks that the app's answer is the byte count.
//
// Prints {"bytes":N,"seconds":S} (from the connect to the last byte of the answer)
// and exits 0, or prints why it failed and exits 1.
import { Connection, requestHead, type Response } from "./raw_http.ts";

const HOST = "127.0.0.1";
const WRITE_BYTES = 64 * 1024;

async function download(conn: Connection, port: number, path: string, bytes: number): Promise<void> {
  await conn.writeAll(Buffer.from(requestHead("GET", HOST, port, path)));
  const response = await conn.nextResponse();
  expectOk(response);
  if (response.bodyBytes !== bytes) throw new Error(`got ${response.bodyBytes} body bytes, expected ${bytes}`);
}

async function upload(conn: Connection, port: number, path: string, bytes: number): Promise<void> {
  const answer = conn.nextResponse(); // taken as it comes, even while the body is still going out
  answer.catch(() => {}); // a failure is seen below, where it is awaited
  await conn.writeAll(Buffer.from(requestHead("POST", HOST, port, path, bytes)));
  const piece = Buffer.alloc(WRITE_BYTES, "x");
  for (let sent = 0; sent < bytes; sent += WRITE_BYTES) {
    await conn.writeAll(bytes - sent >= WRITE_BYTES ? piece : piece.subarray(0, bytes - sent));
  }
  const response = await answer;
  expectOk(response);
  if (response.body !== String(bytes)) throw new Error(`the app answered ${JSON.stringify(response.body.slice(0, 100))}, expected ${bytes}`);
}

function expectOk(response: Response): void {
  if (response.status !== 200) throw new Error(`answered ${response.status} ${JSON.stringify(response.body.slice(0, 100))}`);
}

const TRANSFERS = { download, upload };

const [mode, portArg, path, bytesArg] = process.argv.slice(2);
const port = Number(portArg);
const bytes = Number(bytesArg);
if (!(mode in TRANSFERS) || !Number.isInteger(port) || !path || !Number.isInteger(bytes) || bytes <= 0) {
  console.error("usage: bun bench/stream_client.ts download|upload PORT PATH BYTES");
  process.exit(2);
}
try {
  const started = performance.now();
  const conn = await Connection.open(HOST, port);
  await TRANSFERS[mode as keyof typeof TRANSFERS](conn, port, path, bytes);
  const seconds = (performance.now() - started) / 1000;
  conn.close();
  console.log(JSON.stringify({ bytes, seconds }));
  process.exit(0);
} catch (err) {
  console.log(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
