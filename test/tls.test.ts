// TLS over real sockets: a client that verifies the certificate, the environ, refusals that
// harm no one else (plain HTTP, a stalled handshake, TLS 1.0), client certificates, bad
// files at start (exit 2), and a certificate renewed by SIGHUP under load.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { cleanUp, runCli, spawnServer, type ServerProcess } from "./helpers.ts";
import { PYAPPS, startPy, stopPy } from "./pyhelpers.ts";
import { httpsRequest, makePki, type Pki } from "./tlsfixtures.ts";

const DUMP_TS = join(PYAPPS, "environ_dump.ts");
let pki: Pki;
let server: { key: string; cert: string };
let alice: { key: string; cert: string };
let other: Pki;

beforeAll(() => {
  pki = makePki();
  server = pki.issue("server", "localhost");
  alice = pki.issue("alice", "alice");
  other = makePki(); // a CA the server does not trust
});
afterAll(async () => {
  await cleanUp();
  pki.remove();
  other.remove();
});

const tlsArgs = () => ["--certfile", server.cert, "--keyfile", server.key];
const environOf = (r: { response: { body: Buffer } | null }) => JSON.parse(r.response!.body.toString("latin1"));

describe("HTTPS with a TypeScript app", () => {
  let srv: ServerProcess;
  beforeAll(async () => { srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--access-logfile", "-", ...tlsArgs()]); });

  test("the certificate verifies against its CA; wsgi.url_scheme is https", async () => {
    expect(srv.stderr()).toContain("Listening at: https://127.0.0.1:");
    const r = await httpsRequest(srv.port, { ca: pki.ca });
    expect(r.error).toBeNull();
    expect(r.serverCn).toBe("localhost");
    expect(r.response!.status).toBe(200);
    const env = environOf(r);
    expect(env.wsgi.url_scheme).toBe("https");
    expect(env.cgi.SSL_CLIENT_S_DN).toBeUndefined();
  });

  test("a client trusting another CA refuses the certificate (the check is real)", async () => {
    const r = await httpsRequest(srv.port, { ca: other.ca });
    expect(r.response).toBeNull();
    expect(r.error).not.toBeNull();
  });

  test("the access log shows TLS", async () => {
    await httpsRequest(srv.port, { ca: pki.ca });
    expect(await srv.waitForOutput(/"GET \/ HTTP\/1.1" 200 .* tls=TLSv1\.[23]/, "stdout")).toBe(true);
  });

  test("plain HTTP on the TLS port gets nginx's 400, and a TLS client beside it is served", async () => {
    const plain = await fetch(`http://127.0.0.1:${srv.port}/`);
    expect(plain.status).toBe(400);
    expect(await plain.text()).toContain("plain HTTP request was sent to the HTTPS port");
    expect((await httpsRequest(srv.port, { ca: pki.ca })).response!.status).toBe(200);
  });

  test("a TLS 1.0 client is refused (protocol version); TLS 1.2 and 1.3 are served", async () => {
    const run = (flag: string) => Bun.spawnSync(["openssl", "s_client", "-connect", `127.0.0.1:${srv.port}`, flag, "-CAfile", pki.ca, "-servername", "localhost", "-ign_eof"], { stdin: new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), stdout: "pipe", stderr: "pipe", timeout: 10_000 });
    const old = run("-tls1");
    expect(old.stdout.toString()).not.toContain("HTTP/1.1 200");
    for (const flag of ["-tls1_2", "-tls1_3"]) {
      const ok = run(flag);
      expect(ok.stdout.toString()).toContain("HTTP/1.1 200");
    }
    expect((await httpsRequest(srv.port, { ca: pki.ca })).response!.status).toBe(200);
  });
});

test("a client stalled in the handshake is closed at --header-timeout; another is served meanwhile", async () => {
  const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--header-timeout", "1", ...tlsArgs()]);
  const events: string[] = [];
  let closed!: () => void;
  const isClosed = new Promise<void>((r) => (closed = r));
  // A ClientHello record header promising 512 bytes, then nothing: the handshake never completes.
  await Bun.connect({ hostname: "127.0.0.1", port: srv.port, socket: {
    open(s) { s.write(Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); },
    data() {},
    close() { events.push("stalled closed"); closed(); },
  } });
  const r = await httpsRequest(srv.port, { ca: pki.ca });
  events.push(`other served ${r.response?.status}`);
  await isClosed;
  expect(events).toEqual(["other served 200", "stalled closed"]);
});

describe("client certificates (--ca-certs, --cert-reqs)", () => {
  test("--cert-reqs 2: refused without a certificate; with one its verified subject is in SSL_CLIENT_S_DN", async () => {
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", ...tlsArgs(), "--ca-certs", pki.ca, "--cert-reqs", "2"]);
    const none = await httpsRequest(srv.port, { ca: pki.ca });
    expect(none.response).toBeNull();
    const wrong = other.issue("mallory", "mallory");
    expect((await httpsRequest(srv.port, { ca: pki.ca, ...wrong })).response).toBeNull();
    const r = await httpsRequest(srv.port, { ca: pki.ca, ...alice });
    expect(r.response!.status).toBe(200);
    expect(environOf(r).cgi.SSL_CLIENT_S_DN).toBe("CN=alice,O=Example");
  });

  test("--cert-reqs 1: served without a certificate, refused with an unverified one", async () => {
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", ...tlsArgs(), "--ca-certs", pki.ca, "--cert-reqs", "1"]);
    const none = await httpsRequest(srv.port, { ca: pki.ca });
    expect(none.response!.status).toBe(200);
    expect(environOf(none).cgi.SSL_CLIENT_S_DN).toBeUndefined();
    expect((await httpsRequest(srv.port, { ca: pki.ca, ...other.issue("eve", "eve") })).response).toBeNull();
    expect(environOf(await httpsRequest(srv.port, { ca: pki.ca, ...alice })).cgi.SSL_CLIENT_S_DN).toBe("CN=alice,O=Example");
  });
});

describe("bad TLS files at start: a clear error, exit 2, no key material printed", () => {
  const cases: [string, () => string[], RegExp][] = [
    ["missing certificate", () => ["--certfile", join(pki.dir, "nope.crt"), "--keyfile", server.key], /--certfile .*nope\.crt: cannot read: no such file or directory/],
    ["missing key", () => ["--certfile", server.cert, "--keyfile", join(pki.dir, "nope.key")], /--keyfile .*nope\.key: cannot read/],
    ["a key that is not PEM", () => ["--certfile", server.cert, "--keyfile", pki.ca.replace("ca.crt", "ext.cnf")], /--keyfile .*: not a PEM private key/],
    ["a certificate that is not PEM", () => ["--certfile", server.key.replace("server.key", "ext.cnf"), "--keyfile", server.key], /--certfile .*: not a PEM certificate/],
    ["certificate and key that do not match", () => ["--certfile", server.cert, "--keyfile", alice.key], /do not match/],
    ["a cipher list OpenSSL refuses", () => [...tlsArgs(), "--ciphers", "NO-SUCH-CIPHER"], /--ciphers NO-SUCH-CIPHER:/],
  ];
  for (const [name, args, message] of cases) {
    test(name, async () => {
      const r = await runCli([DUMP_TS, "-b", "127.0.0.1:0", ...args()]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain("PRIVATE KEY");
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
  }
});

test("Python app: wsgi.url_scheme is https (the worker takes it from the front's frame)", async () => {
  const py = await startPy(join(PYAPPS, "probe.py"), ["-w", "1", ...tlsArgs()]);
  try {
    const r = await httpsRequest(py.port, { ca: pki.ca, request: "GET / HTTP/1.1\r\nHost: localhost\r\nX-Dump-Environ: 1\r\nConnection: close\r\n\r\n" });
    expect(environOf(r).wsgi.url_scheme).toBe("https");
  } finally {
    await stopPy(py, "SIGTERM");
  }
});

describe("SIGHUP renews the certificate", () => {
  test("under load, with no failed request; open connections keep going; new ones get the new certificate", async () => {
    const live = { key: join(pki.dir, "live.key"), cert: join(pki.dir, "live.crt") };
    copyFileSync(server.key, live.key);
    copyFileSync(server.cert, live.cert);
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--certfile", live.cert, "--keyfile", live.key]);
    expect((await httpsRequest(srv.port, { ca: pki.ca })).serverCn).toBe("localhost");
    // An open keep-alive connection from before the renewal.
    let kept = "";
    const keptSocket = await Bun.connect({ hostname: "127.0.0.1", port: srv.port, tls: { ca: pki.text, serverName: "localhost" } as any, socket: {
      handshake(s) { s.write("GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n"); },
      data(_s, d) { kept += d.toString("latin1"); },
    } });
    while (!kept.includes("/1")) await Bun.sleep(10);
    // Load: 4 loops of fresh connections while the files are replaced and HUP sent.
    let stop = false;
    const failures: string[] = [];
    let served = 0;
    const loop = async () => {
      while (!stop) {
        const r = await httpsRequest(srv.port, { ca: pki.ca });
        if (r.response?.status === 200) served++;
        else failures.push(r.error ?? `status ${r.response?.status}`);
      }
    };
    const loops = [loop(), loop(), loop(), loop()];
    while (served < 20) await Bun.sleep(10);
    const renewed = pki.issue("renewed", "localhost");
    // A renewed certificate: same CN, another key. Write the key first, then the certificate.
    copyFileSync(renewed.key, live.key);
    copyFileSync(renewed.cert, live.cert);
    process.kill(srv.pid, "SIGHUP");
    expect(await srv.waitForOutput(/TLS: certificate reloaded/)).toBe(true);
    const servedAtReload = served;
    while (served < servedAtReload + 20) await Bun.sleep(10);
    stop = true;
    await Promise.all(loops);
    expect(failures).toEqual([]);
    // The new certificate is the one served now: its serial differs.
    const serial = (file: string) => Bun.spawnSync(["openssl", "x509", "-noout", "-serial", "-in", file]).stdout.toString();
    const now = Bun.spawnSync(["openssl", "s_client", "-connect", `127.0.0.1:${srv.port}`, "-servername", "localhost"], { stdin: new Uint8Array(0), stdout: "pipe", stderr: "pipe", timeout: 10_000 });
    const served_ = Bun.spawnSync(["openssl", "x509", "-noout", "-serial"], { stdin: now.stdout, stdout: "pipe" }).stdout.toString();
    expect(served_).toBe(serial(renewed.cert));
    expect(served_).not.toBe(serial(server.cert));
    // The connection opened before the renewal still works.
    keptSocket.write("GET /2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    while (!kept.includes("/2")) await Bun.sleep(10);
    expect(kept.match(/HTTP\/1\.1 200/g)?.length).toBe(2);
  }, 30_000);

  test("a certificate that fails to load on HUP keeps the old one and says why", async () => {
    const live = { key: join(pki.dir, "live2.key"), cert: join(pki.dir, "live2.crt") };
    copyFileSync(server.key, live.key);
    copyFileSync(server.cert, live.cert);
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--certfile", live.cert, "--keyfile", live.key]);
    copyFileSync(alice.cert, live.cert); // not the key's certificate
    process.kill(srv.pid, "SIGHUP");
    expect(await srv.waitForOutput(/TLS: keeping the current certificate: .*do not match/)).toBe(true);
    const r = await httpsRequest(srv.port, { ca: pki.ca });
    expect(r.response!.status).toBe(200);
    expect(r.serverCn).toBe("localhost");
    expect(srv.stderr()).not.toContain("PRIVATE KEY");
  });

  test("on a unix listener too", async () => {
    const live = { key: join(pki.dir, "live3.key"), cert: join(pki.dir, "live3.crt") };
    copyFileSync(server.key, live.key);
    copyFileSync(server.cert, live.cert);
    const sock = join(pki.dir, "s.sock");
    // The unix bind first: the TCP bind's "Listening at" line, which spawnServer waits for, then comes after it.
    const srv = await spawnServer([DUMP_TS, "-b", `unix:${sock}`, "-b", "127.0.0.1:0", "--certfile", live.cert, "--keyfile", live.key]);
    const first = await httpsRequest(0, { ca: pki.ca, unix: sock });
    expect({ cn: first.serverCn, error: first.error }).toEqual({ cn: "localhost", error: null });
    const renewed = pki.issue("renewed3", "localhost");
    copyFileSync(renewed.key, live.key);
    copyFileSync(renewed.cert, live.cert);
    process.kill(srv.pid, "SIGHUP");
    expect(await srv.waitForOutput(/TLS: certificate reloaded/)).toBe(true);
    // The client's view of the certificate over the unix socket: its CN is the same, its fingerprint is the renewed one.
    const fp = await new Promise<string>((resolve) => {
      Bun.connect({ unix: sock, tls: { ca: pki.text, serverName: "localhost" }, socket: { handshake(s: any) { resolve(s.getPeerCertificate().fingerprint256); s.end(); }, data() {} } } as any);
    });
    const { X509Certificate } = await import("node:crypto");
    expect(fp).toBe(new X509Certificate(await Bun.file(renewed.cert).text()).fingerprint256);
  });
});
