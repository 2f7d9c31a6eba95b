// Throwaway certificates made by the real openssl into a temp dir, and a TLS client that
// checks the server's certificate (Bun.connect with a CA), for the TLS and PROXY tests.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseResponses, type HttpResponse } from "./helpers.ts";

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
}

export interface Pki {
  dir: string;
  /** The CA that signs everything below (clients verify the server against it). */
  ca: string;
  /** The CA certificate's PEM text. */
  text: string;
  /** Make key + certificate NAME.key / NAME.crt for CN, signed by the CA (serverAuth and clientAuth, SAN localhost + 127.0.0.1). */
  issue(name: string, cn: string): { key: string; cert: string };
  remove(): void;
}

export function makePki(): Pki {
  if (Bun.which("openssl") === null) throw new Error("openssl is required for the TLS tests (Debian package openssl)");
  const dir = mkdtempSync(join(tmpdir(), "bunicorn-tls-"));
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bunicorn test CA"], dir);
  Bun.write(join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  Bun.spawnSync(["sync"]);
  return {
    dir,
    ca: join(dir, "ca.crt"),
    text: readFileSync(join(dir, "ca.crt"), "utf8"),
    issue(name, cn) {
      openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}/O=Example`], dir);
      openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", "ext.cnf"], dir);
      return { key: join(dir, `${name}.key`), cert: join(dir, `${name}.crt`) };
    },
    remove() { rmSync(dir, { recursive: true, force: true }); },
  };
}

export interface TlsResult {
  response: HttpResponse | null;
  /** The server certificate's CN, as the client saw it after verifying it. */
  serverCn: string | null;
  tlsVersion: string | null;
  /** Why the connection failed, when it did. */
  error: string | null;
}

/**
 * One HTTPS request over a fresh connection that verifies the server against `ca` (for
 * serverName localhost); `prefix` bytes (a PROXY header) go out in the clear first.
 */
export async function httpsRequest(port: number, opts: { ca: string; cert?: string; key?: string; request?: string; prefix?: Uint8Array; unix?: string }): Promise<TlsResult> {
  const request = opts.request ?? "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  const tls = {
    ca: readFileSync(opts.ca, "utf8"),
    serverName: "localhost",
    rejectUnauthorized: true,
    ...(opts.cert ? { cert: readFileSync(opts.cert, "utf8"), key: readFileSync(opts.key!, "utf8") } : {}),
  };
  return await new Promise<TlsResult>((resolve) => {
    const result: TlsResult = { response: null, serverCn: null, tlsVersion: null, error: null };
    let buf = Buffer.alloc(0);
    const finish = () => {
      const parsed = parseResponses(buf, [], true);
      result.response = parsed.responses[0] ?? null;
      resolve(result);
    };
    const handlers = {
      handshake(s: any, ok: boolean, err: any) {
        if (!ok || !s.authorized) { result.error = `handshake: ${err?.code ?? "not authorized"}`; s.end(); return; }
        result.serverCn = s.getPeerCertificate()?.subject?.CN ?? null;
        result.tlsVersion = s.getTLSVersion?.() ?? null;
        s.write(request);
      },
      data(_s: any, d: Buffer) { buf = Buffer.concat([buf, d]); },
      close(_s: any, err?: Error) { if (err && result.error === null) result.error = err.message; finish(); },
      error(_s: any, err: Error) { result.error ??= err.message; },
      connectError(_s: any, err: Error) { result.error = err.message; finish(); },
    };
    const timer = setTimeout(() => { result.error ??= "no answer in 10 s"; finish(); }, 10_000);
    const done = resolve;
    resolve = (r) => { clearTimeout(timer); done(r); };
    const target = opts.unix ? { unix: opts.unix } : { hostname: "127.0.0.1", port };
    if (opts.prefix === undefined) {
      Bun.connect({ ...target, tls, socket: handlers } as any).catch((e: Error) => { result.error = e.message; finish(); });
    } else {
      // The PROXY header in the clear, then TLS on the same connection.
      Bun.connect({ ...target, socket: { data() {}, open(s: any) { s.write(opts.prefix); s.upgradeTLS({ tls, socket: handlers }); } } } as any)
        .catch((e: Error) => { result.error = e.message; finish(); });
    }
  });
}

export const pemText = (file: string) => readFileSync(file, "utf8");
