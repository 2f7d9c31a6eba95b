// -u/-g when started as root (tests here run as root; CI=true makes a non-root run fail, not
// skip): the front binds a privileged port, a unix socket and opens its error log in a
// root-only directory, then it and every worker run as nobody/nogroup, with no supplementary
// group of root's left; checked in /proc/PID/status. An unknown user exits 2 before binding.
import { afterEach, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanUp, runCli, spawnServer } from "./helpers.ts";
import { bodyText, request, waitFor, workerPids } from "./pyhelpers.ts";

afterEach(cleanUp);

const isRoot = process.getuid!() === 0;
// The virtualenv's Python lives under /root here (mode 0700): nobody cannot run it; the system's can.
const SYSTEM_PYTHON = "/usr/bin/python3";

/** Uid, Gid and Groups lines of /proc/PID/status: [real, effective, saved, fs] and the list. */
function ids(pid: number): { uid: number[]; gid: number[]; groups: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const line = (key: string) => (new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
  return { uid: line("Uid"), gid: line("Gid"), groups: line("Groups") };
}

/** A port below 1024 nobody uses now: only root can bind it, so serving on it shows the bind came first. */
function freePrivilegedPort(): number {
  for (let port = 900; port < 1024; port++) {
    try {
      const l = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
      l.stop(true);
      return port;
    } catch { /* taken */ }
  }
  throw new Error("no free port below 1024");
}

test.skipIf(!isRoot && process.env.CI !== "true")("as root with -u nobody -g nogroup: binds port < 1024 and a unix socket, opens its log as root, then front and workers run as 65534, and both sockets are theirs", async () => {
  if (!isRoot) throw new Error("this test needs root (CI runs as root)");
  const dir = mkdtempSync(join(tmpdir(), "bunicorn-priv-"));
  chmodSync(dir, 0o700); // only root may enter: the log and the socket are made before the switch
  try {
    const port = freePrivilegedPort();
    const errors = join(dir, "error.log"), sock = join(dir, "app.sock");
    const server = await spawnServer(["apps/hello.py", "-w", "2", "--python", SYSTEM_PYTHON, "-b", `127.0.0.1:${port}`, "-b", `unix:${sock}`,
      "-u", "nobody", "-g", "nogroup", "--error-logfile", errors, "--control-socket", join(dir, "ctl.sock")], { errorLogFile: errors, readyTimeoutMs: 20_000 });
    expect(await server.waitForOutput(/Workers ready: 2/, "stderr", 20_000)).toBe(true);
    expect(server.stderr()).toContain("Running as uid 65534 gid 65534 (nobody)");
    expect(bodyText(await request(port, "/"))).toBe("Hello, World!");
    const front = ids(server.pid);
    expect(front).toEqual({ uid: [65534, 65534, 65534, 65534], gid: [65534, 65534, 65534, 65534], groups: [65534] });
    const workers = workerPids(server.pid);
    expect(workers.length).toBe(2);
    for (const pid of workers) expect(ids(pid)).toEqual(front);
    // The unix socket now belongs to the user the server runs as (gunicorn chowns it too).
    expect([statSync(sock).uid, statSync(sock).gid]).toEqual([65534, 65534]);
    // So does bunicorn ctl's socket, still 0600: the server's user (and root) may open it, no one else.
    const ctl = statSync(join(dir, "ctl.sock"));
    expect([ctl.uid, ctl.gid, ctl.mode & 0o777]).toEqual([65534, 65534, 0o600]);
    const viaUnix = await new Promise<string>((resolve, reject) => {
      let got = "";
      Bun.connect({ unix: sock, socket: {
        open(s) { s.write("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"); },
        data(_s, bytes) { got += bytes.toString(); },
        close() { resolve(got); },
        error(_s, err) { reject(err); },
      } }).catch(reject);
    });
    expect(viaUnix).toEndWith("Hello, World!");
    // A worker started later (TTIN) is born as nobody too.
    server.proc.kill("SIGTTIN");
    expect(await waitFor(() => workerPids(server.pid).length === 3, 10_000)).toBe(true);
    for (const pid of workerPids(server.pid)) expect(ids(pid).uid).toEqual([65534, 65534, 65534, 65534]);
    server.proc.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 40_000);

test("an unknown --user or --group exits 2 before anything is bound", async () => {
  const r = await runCli(["-u", "no-such-user-bunicorn", "-b", "127.0.0.1:0", "apps/hello.ts"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("bunicorn: error: --user no-such-user-bunicorn: no such user");
  expect(r.stderr).not.toContain("Listening at");
  const g = await runCli(["-g", "no-such-group-bunicorn", "-b", "127.0.0.1:0", "apps/hello.ts"]);
  expect(g.code).toBe(2);
  expect(g.stderr).toContain("--group no-such-group-bunicorn: no such group");
});
