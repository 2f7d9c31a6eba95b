// The bridge's frame writer and reader (bridge.ts) on their own. The writer reuses one
// scratch buffer for small frames once the socket has taken them, so a write that falls
// short must never let new frames overwrite bytes still waiting: checked over a real
// socketpair whose far end does not read for a while, with frames of every size. The
// reader is sans-IO: frames fed whole, byte by byte, and split at every offset.
import { expect, test } from "bun:test";
import { FRAME, FRAME_HEADER_BYTES, FrameReader, FrameWriter } from "../bridge.ts";
import { makeSocketPair } from "../systemd.ts";

/** A frame as the protocol lays it out: u32 payload length, u8 type, u32 id, payload. */
function frameBytes(type: number, id: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
  b.writeUInt32BE(payload.length, 0);
  b[4] = type;
  b.writeUInt32BE(id, 5);
  b.set(payload, FRAME_HEADER_BYTES);
  return b;
}

/** Payload i: its size cycles through small, medium and big (inline-body sized) frames; the bytes say who they are. */
function payloadFor(i: number): Buffer {
  const sizes = [0, 1, 13, 300, 4095, 4096, 5000, 70_000, 200_000];
  const size = sizes[i % sizes.length];
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k++) b[k] = (i * 31 + k) & 0xff;
  return b;
}

/** A connected pair of Bun sockets over a socketpair; what reaches `far` is collected. */
async function socketPair(): Promise<{ near: any; far: any; received: Buffer[]; closeAll: () => void }> {
  const [a, b] = makeSocketPair();
  const received: Buffer[] = [];
  let drain: () => void = () => {};
  const near: any = await new Promise((resolve) => {
    void (Bun.connect as any)({ fd: a, socket: { open: resolve, data() {}, drain() { drain(); }, close() {}, error() {} } });
  });
  const far: any = await new Promise((resolve) => {
    void (Bun.connect as any)({ fd: b, socket: { open: resolve, data(_s: unknown, bytes: Buffer) { received.push(Buffer.from(bytes)); }, close() {}, error() {} } });
  });
  return { near: Object.assign(near, { setDrain: (cb: () => void) => { drain = cb; } }), far, received, closeAll: () => { near.end(); far.end(); } };
}

test("frames queued while the socket cannot take them arrive whole and in order", async () => {
  const { near, far, received, closeAll } = await socketPair();
  const writer = new FrameWriter();
  writer.socket = near;
  near.setDrain(() => writer.onDrain());
  far.pause(); // nothing is read: the socketpair's buffer fills and writes fall short
  const expected: Buffer[] = [];
  let id = 1;
  // Several turns of the event loop, each with many frames, so that flushes happen while blocked.
  for (let turn = 0; turn < 12; turn++) {
    for (let k = 0; k < 40; k++, id++) {
      const payload = payloadFor(id);
      expected.push(frameBytes(FRAME.DATA, id, payload));
      writer.frame(FRAME.DATA, id, payload.length === 0 ? [] : [payload.subarray(0, payload.length >> 1), payload.subarray(payload.length >> 1)], payload.length);
    }
    await new Promise((r) => setImmediate(r));
  }
  const want = Buffer.concat(expected);
  expect(want.length).toBeGreaterThan(4 * 1024 * 1024); // far more than a socketpair holds
  far.resume();
  const deadline = Date.now() + 20_000;
  while (received.reduce((n, b) => n + b.length, 0) < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const got = Buffer.concat(received);
  closeAll();
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
}, 30_000);

test("REQ frames written from an environ carry the fields the worker splits, latin-1 byte for byte", async () => {
  const { near, received, closeAll } = await socketPair();
  const writer = new FrameWriter();
  writer.socket = near;
  const environ = { REQUEST_METHOD: "GET", PATH_INFO: "/caf\u00e9/a\u0000b", QUERY_STRING: "", HTTP_X_LATIN: "\u00ff\u00e9t\u00e9", SCRIPT_NAME: "" };
  const body = Buffer.from("hello body");
  writer.request(7, 1, environ, [body], body.length);
  const deadline = Date.now() + 5_000;
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
  closeAll();
  const got = Buffer.concat(received);
  const path = Buffer.from(environ.PATH_INFO, "latin1");
  const fields = Buffer.from("REQUEST_METHOD\0GET\0QUERY_STRING\0\0HTTP_X_LATIN\0\u00ff\u00e9t\u00e9\0SCRIPT_NAME\0", "latin1");
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n, 0); return b; };
  const payload = Buffer.concat([Buffer.from([1]), u32(path.length), path, u32(fields.length), fields, body]);
  expect(got.equals(frameBytes(FRAME.REQ, 7, payload))).toBe(true);
});

test("the reader gives the same frames fed whole, byte by byte, and split at every offset", () => {
  const frames = [frameBytes(FRAME.RESPONSE, 1, Buffer.from("\0\0\0\x05200 OKbody")), frameBytes(FRAME.END, 2, Buffer.alloc(0)), frameBytes(FRAME.DATA, 3, payloadFor(7).subarray(0, 3000))];
  const all = Buffer.concat(frames);
  const expected = frames.map((f): [number, number, string] => [f[4], f.readUInt32BE(5), f.subarray(FRAME_HEADER_BYTES).toString("hex")]);
  const readAll = (pieces: Buffer[]) => {
    const reader = new FrameReader();
    const out: [number, number, string][] = [];
    for (const p of pieces) reader.read(p, (type, id, buf, start, end) => out.push([type, id, buf.subarray(start, end).toString("hex")]));
    return out;
  };
  expect(readAll([all])).toEqual(expected);
  expect(readAll([...all].map((byte) => Buffer.from([byte])))).toEqual(expected);
  for (let cut = 1; cut < all.length; cut += 7) expect(readAll([all.subarray(0, cut), all.subarray(cut)])).toEqual(expected);
});
