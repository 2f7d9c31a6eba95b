// Two bunicorn instances behind a real HAProxy (Debian package) that health-checks
// --health-path; under steady load each is stopped (SIGTERM) and started again in turn.
// The drain delay takes it out of HAProxy's rotation before its listener closes: no
// request may fail. HAProxy is stopped by its pid.
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type PyServer, PYAPPS, freePort, request, runLoad, startPy, stopAllPy, stopPy, waitFor, type LoadResult } from "./pyhelpers.ts";
import { cleanUp } from "./helpers.ts";

afterAll(async () => {
  await stopAllPy();
  await cleanUp();
});

const APP = path.join(PYAPPS, "probe.py") + ":application";

test("rolling restart of two instances behind HAProxy under load: zero failed requests", async () => {
  const haproxy = Bun.which("haproxy") ?? (fs.existsSync("/usr/sbin/haproxy") ? "/usr/sbin/haproxy" : null);
  if (haproxy === null) throw new Error("haproxy is not installed: apt-get install haproxy (.ci/run installs it when run as root)");
  const ports = [freePort(), freePort()];
  const front = freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunicorn-haproxy-"));
  const cfg = path.join(dir, "haproxy.cfg");
  // Checks every 100 ms, down after 2 failures: out of rotation within ~0.3 s of the 503s,
  // well inside the 2 s drain delay. No retries: only the drain keeps requests from failing
  // (with --drain-delay 0 this test fails: HAProxy sends to a closed listener).
  fs.writeFileSync(cfg, `
global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  retries 0
frontend f
  bind 127.0.0.1:${front}
  default_backend b
backend b
  balance roundrobin
  option httpchk GET /healthz
  http-check expect status 200
  default-server inter 100ms fall 2 rise 2
${ports.map((p, i) => `  server s${i} 127.0.0.1:${p} check`).join("\n")}
`);
  const args = (port: number) => ["-w", "1", "-b", `127.0.0.1:${port}`, "--health-path", "/healthz", "--drain-delay", "2", "--graceful-timeout", "5"];
  const start = (port: number) => startPy(APP, args(port)).then((s) => { s.port = port; return s; });
  const servers: PyServer[] = [await start(ports[0]), await start(ports[1])];
  const hp = Bun.spawn([haproxy, "-f", cfg, "-db"], { stdout: "ignore", stderr: "pipe" });
  try {
    // Both up in HAProxy's eyes (rise 2 after its first checks): requests through it reach both workers.
    const seen = new Set<string>();
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      const res = await request(front, "/pid").catch(() => null);
      if (res?.status === 200) seen.add(res.body.toString());
      else await Bun.sleep(50);
    }
    expect(seen.size).toBe(2);
    let isDone = false;
    const result: LoadResult = { ok: 0, failures: [], bodies: [] };
    const load = runLoad(front, { target: "/pid", concurrency: 4, shouldStop: () => isDone }, result);
    for (let i = 0; i < 2; i++) {
      const before = result.ok;
      const { code } = await stopPy(servers[i], "SIGTERM", 3000, 20_000);
      expect(code).toBe(0);
      servers[i] = await start(ports[i]);
      // Back in rotation: its own pid shows up through HAProxy again.
      const workerPids = () => servers[i].workers().map(String);
      expect(await waitFor(() => result.bodies.slice(-50).some((b) => workerPids().includes(b)), 10_000)).toBe(true);
      expect(result.ok).toBeGreaterThan(before);
    }
    isDone = true;
    await load;
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(100);
  } finally {
    hp.kill("SIGKILL");
    await hp.exited;
    for (const s of servers) await stopPy(s, "SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);
