// PROXY protocol and forwarded headers over real sockets, with a real HAProxy in front.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanUp, spawnServer, type ServerProcess } from "./helpers.ts";
import { freePort, PYAPPS, startPy, stopPy, waitFor } from "./pyhelpers.ts";
import { httpsRequest, makePki, type Pki } from "./tlsfixtures.ts";

const DUMP_TS = join(PYAPPS, "environ_dump.ts");
let pki: Pki;
beforeAll(() => { pki = makePki(); });
afterAll(async () => { await cleanUp(); pki.remove(); });

/** Write raw bytes, read until the server closes: what came back and whether it closed. */
async function rawExchange(port: number, bytes: Uint8Array | string): Promise<string> {
  return await new Promise((resolve) => {
    let got = "";
    Bun.connect({ hostname: "127.0.0.1", port, socket: {
      open(s) { s.write(bytes); },
      data(_s, d) { got += d.toString("latin1"); },
      close() { resolve(got); },
    } });
  });
}

const GET = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
const bodyJson = (raw: string) => JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4));
const be16 = (n: number) => [n >> 8, n & 0xff];
const v2Tcp4 = (src: number[], sport: number) => Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12, ...src, 127, 0, 0, 1, ...be16(sport), ...be16(80)]);
const concat = (a: Uint8Array, b: string) => Buffer.concat([a, Buffer.from(b, "latin1")]);

describe("--proxy-protocol auto", () => {
  let srv: ServerProcess;
  beforeAll(async () => { srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--proxy-protocol", "--access-logfile", "-"]); });

  test("v1: the client's address and port become REMOTE_ADDR/REMOTE_PORT; the peer stays in bunicorn.peer_addr", async () => {
    const env = bodyJson(await rawExchange(srv.port, "PROXY TCP4 203.0.113.7 127.0.0.1 51234 80\r\n" + GET)).cgi;
    expect([env.REMOTE_ADDR, env.REMOTE_PORT, env["bunicorn.peer_addr"]]).toEqual(["203.0.113.7", "51234", "127.0.0.1"]);
    expect(await srv.waitForOutput(/^203\.0\.113\.7 - - .*"GET \/ HTTP\/1.1" 200 .* peer=127\.0\.0\.1$/m, "stdout")).toBe(true);
  });

  test("v2 TCP4, header and request in one write", async () => {
    const env = bodyJson(await rawExchange(srv.port, concat(v2Tcp4([198, 51, 100, 9], 4711), GET))).cgi;
    expect([env.REMOTE_ADDR, env.REMOTE_PORT]).toEqual(["198.51.100.9", "4711"]);
  });

  const refusals: [string, Uint8Array | string][] = [
    ["no PROXY header (plain HTTP)", GET],
    ["a malformed v1 line", "PROXY TCP4 203.0.113.7 127.0.0.1 051234 80\r\n" + GET],
    ["a v1 line over 107 bytes", "PROXY UNKNOWN " + "x".repeat(120) + "\r\n" + GET],
    ["a v2 header with version 1", Uint8Array.from([...v2Tcp4([1, 2, 3, 4], 1)].map((b, i) => (i === 12 ? 0x11 : b)))],
    ["a v2 UDP header", concat(Uint8Array.from([...v2Tcp4([1, 2, 3, 4], 1)].map((b, i) => (i === 13 ? 0x12 : b))), GET)],
  ];
  for (const [name, bytes] of refusals) {
    test(`${name}: closed, nothing answered, nothing reaches the app`, async () => {
      const before = srv.stdout();
      expect(await rawExchange(srv.port, bytes)).toBe("");
      // The app is reached by the next good request only (one more access line, not two).
      await rawExchange(srv.port, "PROXY TCP4 192.0.2.1 127.0.0.1 1 80\r\n" + GET);
      const since = () => srv.stdout().slice(before.length);
      expect(await waitFor(() => /^192\.0\.2\.1 - - /m.test(since()), 5000)).toBe(true);
      // Every access line since is a good request's (earlier tests' lines may land late; none is the refused one's).
      const clients = since().split("\n").filter((l) => l !== "").map((l) => l.split(" ")[0]);
      expect(clients.filter((c) => !["192.0.2.1", "198.51.100.9", "203.0.113.7"].includes(c))).toEqual([]);
    });
  }

  test("a truncated header that never completes is closed at --header-timeout", async () => {
    const s2 = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--proxy-protocol", "v1", "--header-timeout", "1"]);
    expect(await rawExchange(s2.port, "PROXY TCP4 1.2.3.4")).toBe("");
  });
});

test("a peer not in --proxy-allow-from is closed before anything is read", async () => {
  const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.0/8"]);
  expect(await rawExchange(srv.port, "PROXY TCP4 203.0.113.7 127.0.0.1 1 80\r\n" + GET)).toBe("");
});

test("PROXY before TLS: the header in the clear, then the handshake (coalesced with it)", async () => {
  const cert = pki.issue("server", "localhost");
  const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--proxy-protocol", "v2", "--certfile", cert.cert, "--keyfile", cert.key]);
  const r = await httpsRequest(srv.port, { ca: pki.ca, prefix: v2Tcp4([203, 0, 113, 8], 999) });
  expect(r.error).toBeNull();
  const env = JSON.parse(r.response!.body.toString("latin1"));
  expect([env.cgi.REMOTE_ADDR, env.cgi.REMOTE_PORT, env.wsgi.url_scheme]).toEqual(["203.0.113.8", "999", "https"]);
});

describe("forwarded headers (--forwarded-allow-ips)", () => {
  const XFF = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n";
  test("from a trusted peer (the default 127.0.0.1): REMOTE_ADDR and wsgi.url_scheme follow them", async () => {
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0"]);
    const env = bodyJson(await rawExchange(srv.port, XFF));
    expect([env.cgi.REMOTE_ADDR, env.wsgi.url_scheme, env.cgi["bunicorn.peer_addr"], env.cgi.HTTP_X_FORWARDED_FOR]).toEqual(["203.0.113.7", "https", "127.0.0.1", "6.6.6.6, 203.0.113.7"]);
  });
  test("with *: the left-most address", async () => {
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--forwarded-allow-ips", "*"]);
    expect(bodyJson(await rawExchange(srv.port, XFF)).cgi.REMOTE_ADDR).toBe("6.6.6.6");
  });
  test("from an untrusted peer: nothing changes", async () => {
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0"], { env: { FORWARDED_ALLOW_IPS: "10.0.0.1" } });
    const env = bodyJson(await rawExchange(srv.port, XFF));
    expect([env.cgi.REMOTE_ADDR, env.wsgi.url_scheme, env.cgi["bunicorn.peer_addr"]]).toEqual(["127.0.0.1", "http", undefined]);
  });
  test("contradictory scheme headers: 400", async () => {
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0"]);
    expect(await rawExchange(srv.port, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n")).toStartWith("HTTP/1.1 400");
  });
  test("Python app: RFC 7239 Forwarded sets REMOTE_ADDR and wsgi.url_scheme", async () => {
    const py = await startPy(join(PYAPPS, "probe.py"), ["-w", "1"]);
    try {
      const env = bodyJson(await rawExchange(py.port, "GET / HTTP/1.1\r\nHost: h\r\nX-Dump-Environ: 1\r\nForwarded: for=\"[2001:db8::7]:4711\";proto=https\r\nConnection: close\r\n\r\n"));
      expect([env.cgi.REMOTE_ADDR, env.cgi.REMOTE_PORT, env.wsgi.url_scheme, env.cgi["bunicorn.peer_addr"]]).toEqual(["2001:db8::7", "4711", "https", "127.0.0.1"]);
    } finally {
      await stopPy(py, "SIGTERM");
    }
  });
});

describe("HAProxy in front (send-proxy-v2)", () => {
  test("the client's address and port reach the app through a real HAProxy", async () => {
    if (Bun.which("haproxy") === null && !Bun.file("/usr/sbin/haproxy").size) {
      throw new Error("haproxy is required for this test: apt-get install -y haproxy (.ci/run installs it)");
    }
    const haproxyBin = Bun.which("haproxy") ?? "/usr/sbin/haproxy";
    const srv = await spawnServer([DUMP_TS, "-b", "127.0.0.1:0", "--proxy-protocol", "v2"]);
    const front = freePort();
    const cfg = join(pki.dir, "haproxy.cfg");
    writeFileSync(cfg, `global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\nfrontend f\n  bind 127.0.0.1:${front}\n  default_backend b\nbackend b\n  server s1 127.0.0.1:${srv.port} send-proxy-v2\n`);
    const ha = Bun.spawn([haproxyBin, "-f", cfg, "-db"], { stdout: "pipe", stderr: "pipe" });
    try {
      const listening = await waitFor(() => Bun.spawnSync(["bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${front}`]).exitCode === 0, 10_000);
      expect(listening).toBe(true);
      // curl from 127.0.0.5 (any 127/8 address is loopback) so the client differs from HAProxy's own 127.0.0.1.
      const curl = Bun.spawnSync(["curl", "-s", "--interface", "127.0.0.5", "--local-port", "40123-40199", `http://127.0.0.1:${front}/`], { stdout: "pipe", timeout: 10_000 });
      const env = JSON.parse(curl.stdout.toString()).cgi;
      expect(env.REMOTE_ADDR).toBe("127.0.0.5");
      expect(Number(env.REMOTE_PORT)).toBeGreaterThanOrEqual(40123);
      expect(Number(env.REMOTE_PORT)).toBeLessThanOrEqual(40199);
      expect(env["bunicorn.peer_addr"]).toBe("127.0.0.1");
    } finally {
      ha.kill("SIGTERM");
      await ha.exited;
    }
  });
});
