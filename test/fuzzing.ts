// Shared by the fuzz tests (fuzz.test.ts: the parser alone; fuzz-server.test.ts: a
// real server over sockets): a seeded PRNG, so any input can be rebuilt from its
// seed, and byte-level mutations of HTTP/1.1 messages.

/** mulberry32: small, fast, and the same sequence for the same seed on every run. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** uniform in [0, 1) */
  float(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  isChance(p: number): boolean {
    return this.float() < p;
  }
}

/** Pieces of HTTP/1.1 syntax that mutations insert. */
export const TOKENS = [
  "GET", "POST", " ", "/", "/a?b=c", "*", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "\r\n", "\r\n\r\n", "\r", "\n", ":", ": ",
  "Host", "h", "Content-Length", "Transfer-Encoding", "chunked", "gzip", ",", "Expect", "100-continue", "Connection",
  "close", "keep-alive", "0", "5", "a", "F", "ffffffff", ";", "=", '"', "\t", "\0", "\xff", "\x80", "?", "hello",
];

export function toBytes(latin1: string): Uint8Array {
  return Uint8Array.from(latin1, (c) => c.charCodeAt(0));
}

export function fromBytes(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

const SPECIAL_BYTES = [13, 10, 0, 32, 9, 0x7f, 0x80, 0xff, 58 /* : */, 59 /* ; */, 34 /* " */, 44 /* , */, 48 /* 0 */, 102 /* f */];

/** 1 to 4 random edits of `input`; `corpus` supplies the material for splices. */
export function mutate(rng: Rng, input: Uint8Array, corpus: readonly Uint8Array[]): Uint8Array {
  let b = Array.from(input);
  const count = 1 + rng.int(4);
  for (let m = 0; m < count; m++) {
    const at = rng.int(b.length + 1);
    switch (rng.int(10)) {
      case 0: // bit flip
        if (b.length) b[at % b.length]! ^= 1 << rng.int(8);
        break;
      case 1: // random byte
        if (b.length) b[at % b.length] = rng.int(256);
        break;
      case 2: // insert a special byte (CR, LF, NUL, SP, HTAB, DEL, 0x80-0xff, separators)
        b.splice(at, 0, rng.isChance(0.3) ? 0x80 + rng.int(0x80) : rng.pick(SPECIAL_BYTES));
        break;
      case 3: // delete 1..4 bytes
        b.splice(at, 1 + rng.int(4));
        break;
      case 4: {
        // duplicate a range
        const from = rng.int(b.length + 1);
        const len = rng.int(Math.min(32, b.length - from) + 1);
        b.splice(at, 0, ...b.slice(from, from + len));
        break;
      }
      case 5: // truncate
        b = b.slice(0, at);
        break;
      case 6: {
        // CRLF -> LF, or LF -> CRLF
        const i = b.indexOf(10, at);
        if (i > 0 && b[i - 1] === 13) b.splice(i - 1, 1);
        else if (i >= 0) b.splice(i, 0, 13);
        break;
      }
      case 7: {
        // splice with another corpus entry
        const other = Array.from(rng.pick(corpus));
        b = b.slice(0, at).concat(other.slice(rng.int(other.length + 1)));
        break;
      }
      case 8: {
        // change a digit (Content-Length, chunk sizes, versions)
        for (let k = 0; k < b.length; k++) {
          const i = (at + k) % b.length;
          if (b[i]! >= 48 && b[i]! <= 57) {
            b[i] = 48 + rng.int(10);
            break;
          }
        }
        break;
      }
      default: // insert a token
        b.splice(at, 0, ...toBytes(rng.pick(TOKENS)));
    }
  }
  return Uint8Array.from(b);
}
