// systemd, for real: socket activation under systemd-socket-activate (Debian's systemd
// package; .ci/run installs it), and the sd_notify sequence as a datagram listener receives
// it (test/notify_listener.py, in place of systemd). Checked: the sockets passed are served
// (and named in the log), --bind is not used, the workers hold neither those sockets nor the
// LISTEN_*/NOTIFY_SOCKET variables; READY=1, RELOADING=1 with MONOTONIC_USEC then READY=1
// after SIGHUP, STOPPING=1 at SIGTERM, WATCHDOG=1 when WATCHDOG_USEC is set, in that order.
import { afterEach, expect, test } from "bun:test";
import { readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import { RawClient, SERVER_TS, cleanUp, spawnServer } from "./helpers.ts";
import { PYTHON, bodyText, freePort, request, stopPy, waitFor, workerPids, type PyServer } from "./pyhelpers.ts";

afterEach(cleanUp);

const LISTENER = join(import.meta.dir, "notify_listener.py");

function requireSocketActivate(): string {
  const found = Bun.which("systemd-socket-activate");
  // Not a skip: without it this file proves nothing, and CI must say so.
  if (found === null) throw new Error("systemd-socket-activate not found: install Debian's systemd package (.ci/run does, as root)");
  return found;
}

/** The socket inodes a process holds, by fd (from /proc/PID/fd). */
function socketInodes(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith("socket:")) out.set(Number(fd), target);
    } catch { /* closed meanwhile */ }
  }
  return out;
}

const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");

/** Start the listener on `name`; its datagrams, in order, as they arrive. */
async function startNotifyListener(name: string): Promise<{ messages(): string[]; stop(): void }> {
  const proc = Bun.spawn([PYTHON, LISTENER, name], { stdout: "pipe", stderr: "inherit" });
  let text = "";
  void (async () => { for await (const chunk of proc.stdout) text += new TextDecoder().decode(chunk); })();
  if (!(await waitFor(() => text.startsWith("listening\n"), 5000))) throw new Error("notify listener did not start");
  return {
    messages: () => text.split("\n").slice(1).filter(Boolean).map((line) => JSON.parse(line) as string),
    stop: () => proc.kill("SIGKILL"),
  };
}

test("socket activation: both sockets systemd passes are served, named in the log; --bind is not used; workers get neither the sockets nor LISTEN_*", async () => {
  const activate = requireSocketActivate();
  const [web, admin] = [freePort(), freePort()];
  const starting = spawnServer(["apps/hello.py", "-w", "1", "--python", PYTHON, "-b", "127.0.0.1:1"], {
    cmd: [activate, "-l", `127.0.0.1:${web}`, "-l", `127.0.0.1:${admin}`, "--fdname=web:admin", process.execPath, SERVER_TS],
    readyTimeoutMs: 20_000,
  });
  // systemd-socket-activate starts the server at the first connection: make it.
  let first: RawClient | null = null;
  for (let i = 0; i < 250 && first === null; i++) {
    try { first = await RawClient.connect(web); } catch { await Bun.sleep(20); }
  }
  expect(first).not.toBeNull();
  first!.write("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  const server = await starting;
  expect(await first!.waitForClose(20_000)).toBe(true);
  expect(first!.responses()[0].body.toString()).toBe("Hello, World!");
  expect(server.stderr()).toContain(`Listening at: http://127.0.0.1:${web} (systemd socket web, fd 3)`);
  expect(server.stderr()).toContain(`Listening at: http://127.0.0.1:${admin} (systemd socket admin, fd 4)`);
  expect(server.stderr().match(/Listening at: .*/g)).toHaveLength(2); // not at --bind's 127.0.0.1:1
  expect(await server.waitForOutput(/Workers ready: 1/, "stderr", 20_000)).toBe(true);
  expect(bodyText(await request(admin, "/?name=admin"))).toBe("Hello, admin!");
  // The activated sockets stay in the front: no worker holds one, or sees the variables.
  const front = socketInodes(server.pid);
  const listening = [front.get(3), front.get(4)];
  expect(listening.every((s) => s !== undefined)).toBe(true);
  const workers = workerPids(server.pid);
  expect(workers.length).toBe(1);
  for (const pid of workers) {
    const held = [...socketInodes(pid).values()];
    expect(held.filter((s) => listening.includes(s))).toEqual([]);
    expect(environOf(pid).filter((kv) => /^(LISTEN_|NOTIFY_SOCKET|WATCHDOG_)/.test(kv))).toEqual([]);
  }
  expect(environOf(server.pid).some((kv) => kv.startsWith("LISTEN_FDS="))).toBe(true); // it was set for the front
  server.proc.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 40_000);

for (const where of ["a path", "an abstract name"] as const) {
  test(`sd_notify to ${where}: READY=1, RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, WATCHDOG=1`, async () => {
    const name = where === "a path" ? join("/tmp", `bunicorn-notify-${process.pid}-${Date.now()}.sock`) : `@bunicorn-notify-${process.pid}-${Date.now()}`;
    const listener = await startNotifyListener(name);
    try {
      const server = await spawnServer(["apps/hello.py", "-w", "1", "--python", PYTHON, "-b", "127.0.0.1:0"], {
        env: { NOTIFY_SOCKET: name, WATCHDOG_USEC: "400000" },
        readyTimeoutMs: 20_000,
      });
      const states = () => listener.messages().filter((m) => m !== "WATCHDOG=1");
      expect(await waitFor(() => states().length === 1, 20_000)).toBe(true);
      expect(states()[0]).toBe(`READY=1\nMAINPID=${server.pid}`);
      expect(await server.waitForOutput(/Workers ready: 1/)).toBe(true); // READY=1 came once the workers could serve
      expect(await waitFor(() => listener.messages().includes("WATCHDOG=1"), 5000)).toBe(true);
      server.proc.kill("SIGHUP");
      expect(await waitFor(() => states().length === 3, 20_000)).toBe(true);
      expect(states()[1]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$/);
      expect(states()[2]).toBe("READY=1");
      expect(server.stderr().indexOf("Reloaded (SIGHUP)")).toBeGreaterThan(server.stderr().indexOf("Booting worker", server.stderr().indexOf("Handling signal: hup")));
      // The workers do not speak for the service.
      for (const pid of workerPids(server.pid)) expect(environOf(pid).some((kv) => kv.startsWith("NOTIFY_SOCKET="))).toBe(false);
      server.proc.kill("SIGTERM");
      expect(await server.exited).toBe(0);
      expect(await waitFor(() => states().length === 4, 5000)).toBe(true);
      expect(states()).toEqual([`READY=1\nMAINPID=${server.pid}`, states()[1], "READY=1", "STOPPING=1"]);
    } finally {
      listener.stop();
      if (!name.startsWith("@")) rmSync(name, { force: true });
    }
  }, 40_000);
}

test("NOTIFY_SOCKET that is neither a path nor @name: exit 2", async () => {
  const r = Bun.spawnSync([process.execPath, SERVER_TS, "apps/hello.ts"], { env: { ...process.env, NOTIFY_SOCKET: "vsock:2:1" } });
  expect(r.exitCode).toBe(2);
  expect(r.stderr.toString()).toContain("NOTIFY_SOCKET: expected a path or @name, got 'vsock:2:1'");
});
