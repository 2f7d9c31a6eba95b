// The HTTP/1.1 client side that bench/stream_client.ts and bench/idle_conns.ts share:
// raw TCP through Bun.connect (no fetch: we want to see every byte, write with
// backpressure, and keep connections open and idle for as long as we like).

const CRLFCRLF = Buffer.from("\r\n\r\n");
const MAX_HEAD_BYTES = 64 * 1024;
/** Bodies up to this size are kept (to check the answer); larger ones are only counted. */
const KEEP_BODY_BYTES = 4 * 1024;

export interface Response {
  status: number;
  bodyBytes: number;
  /** The body as text when it is at most KEEP_BODY_BYTES long, else "". */
  body: string;
}

/**
 * Reads one response from the bytes it is fed. The body must be framed by
 * Content-Length (every server here sends one, as every app here sets it), or
 * run to the close of the connection.
 */
export class ResponseReader {
  private head: Buffer = Buffer.alloc(0);
  private status = 0;
  private contentLength: number | null = null;
  private headDone = false;
  private bodyBytes = 0;
  private kept: Buffer[] = [];

  /** Some of a response has been read. */
  get started(): boolean {
    return this.head.length > 0;
  }

  /** Feeds bytes; returns the response once it is complete, else null. Bytes past it are an error. */
  feed(chunk: Uint8Array): Response | null {
    let body: Uint8Array = chunk;
    if (!this.headDone) {
      this.head = Buffer.concat([this.head, chunk]);
      const end = this.head.indexOf(CRLFCRLF);
      if (end < 0) {
        if (this.head.length > MAX_HEAD_BYTES) throw new Error("response head too long");
        return null;
      }
      this.parseHead(this.head.subarray(0, end).toString("latin1"));
      body = this.head.subarray(end + CRLFCRLF.length);
      this.headDone = true;
    }
    this.bodyBytes += body.length;
    if (this.bodyBytes <= KEEP_BODY_BYTES && body.length > 0) this.kept.push(Buffer.from(body));
    if (this.contentLength === null) return null;
    if (this.bodyBytes > this.contentLength) throw new Error(`got ${this.bodyBytes - this.contentLength} bytes past the response`);
    return this.bodyBytes === this.contentLength ? this.result() : null;
  }

  /** The connection closed: a body without Content-Length ends here; anything else was cut short. */
  end(): Response {
    if (this.headDone && this.contentLength === null) return this.result();
    throw new Error(this.headDone ? `connection closed after ${this.bodyBytes} of ${this.contentLength} body bytes` : "connection closed before the response head");
  }

  private parseHead(head: string): void {
    const lines = head.split("\r\n");
    const statusLine = /^HTTP\/1\.[01] ([0-9]{3})/.exec(lines[0]);
    if (!statusLine) throw new Error(`bad status line ${JSON.stringify(lines[0].slice(0, 80))}`);
    this.status = Number(statusLine[1]);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") this.contentLength = Number(value);
      if (name === "transfer-encoding" && value.toLowerCase() !== "identity") throw new Error(`unsupported Transfer-Encoding: ${value}`);
    }
  }

  private result(): Response {
    const body = this.bodyBytes <= KEEP_BODY_BYTES ? Buffer.concat(this.kept).toString("latin1") : "";
    return { status: this.status, bodyBytes: this.bodyBytes, body };
  }
}

export function requestHead(method: string, host: string, port: number, path: string, contentLength?: number): string {
  const length = contentLength === undefined ? "" : `Content-Length: ${contentLength}\r\nContent-Type: application/octet-stream\r\n`;
  return `${method} ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n${length}\r\n`;
}

/**
 * One client connection: its answers come through `nextResponse`, `closed`
 * resolves when the peer (or we) close it, and `writeAll` honours backpressure
 * (Bun's socket.write takes what fits and returns how much; the rest waits for drain).
 */
export class Connection {
  private reader = new ResponseReader();
  private waiting: { resolve: (r: Response) => void; reject: (e: Error) => void } | null = null;
  private drained: (() => void) | null = null;
  private failure: Error | null = null;
  /** A response that came before anyone asked for it (say, an error while the body is still going out). */
  private early: Response | null = null;
  isOpen = true;
  readonly closed: Promise<void>;
  private markClosed!: () => void;

  private constructor(private socket: Bun.Socket<undefined>) {
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  static async open(host: string, port: number): Promise<Connection> {
    let conn: Connection | null = null;
    const socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_s, data) => conn?.onData(data),
        drain: () => conn?.onDrain(),
        close: () => conn?.onClose(null),
        end: () => conn?.onClose(null),
        error: (_s, err) => conn?.onClose(err),
      },
    });
    conn = new Connection(socket);
    return conn;
  }

  /** The next complete response (only one may be awaited at a time). */
  nextResponse(): Promise<Response> {
    const early = this.early;
    this.early = null;
    if (early) return Promise.resolve(early);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  async writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (!this.isOpen) throw this.failure ?? new Error("connection closed while writing");
      const written = this.socket.write(offset === 0 ? bytes : bytes.subarray(offset));
      if (written < 0) throw new Error("connection closed while writing");
      offset += written;
      if (offset < bytes.length) await new Promise<void>((resolve) => (this.drained = resolve));
    }
  }

  close(): void {
    this.socket.end();
  }

  private onData(data: Uint8Array): void {
    try {
      const response = this.reader.feed(data);
      if (response) this.settle(response, null);
    } catch (err) {
      this.settle(null, err as Error);
    }
  }

  private onDrain(): void {
    const drained = this.drained;
    this.drained = null;
    drained?.();
  }

  private onClose(err: Error | null): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    if (this.waiting || this.reader.started) {
      try {
        this.settle(this.reader.end(), null);
      } catch (endErr) {
        this.settle(null, err ?? (endErr as Error));
      }
    }
    this.failure ??= err ?? new Error("connection closed");
    this.onDrain(); // a writer waiting for drain sees the close
    this.markClosed();
  }

  private settle(response: Response | null, err: Error | null): void {
    const waiting = this.waiting;
    this.waiting = null;
    this.reader = new ResponseReader();
    if (err) this.failure = err;
    if (!waiting) {
      if (response) this.early = response;
      return;
    }
    if (response) waiting.resolve(response);
    else waiting.reject(err!);
  }
}
