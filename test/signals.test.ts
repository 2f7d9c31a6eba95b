// The signals gunicorn handles, sent to a real bunicorn process (TERM, INT and QUIT are in
// cli.test.ts, HUP under load and TTIN/TTOU in supervision.test.ts): USR1 reopens the log
// files after a logrotate-style rename, USR2 and WINCH (not daemonized) are logged and change
// nothing, WINCH under --daemon stops the workers and keeps the front, HUP re-reads the
// config file. No signal gunicorn handles ends the process.
import { expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, exchange, runCli, spawnServer } from "./helpers.ts";
import { PYTHON, bodyText, childPids, freePort, isAlive, isListening, request, startPy, stopPy, usePyFixture, waitFor, workerPids } from "./pyhelpers.ts";

let dir = "";
usePyFixture("bunicorn-signals-", (d) => { dir = d; });

const hello = async (port: number) => (await exchange(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")).responses[0];

test("SIGUSR1 after logrotate's rename: later lines go to new files at the old names, earlier ones stay in the renamed files", async () => {
  const access = join(dir, "access.log"), errors = join(dir, "error.log");
  const server = await spawnServer(["-b", "127.0.0.1:0", "--access-logfile", access, "--error-logfile", errors, join(ROOT, "apps", "hello.ts")], { errorLogFile: errors });
  expect((await hello(server.port)).statusLine).toBe("HTTP/1.1 200 OK");
  expect(await waitFor(() => existsSync(access) && readFileSync(access, "utf8").includes('"GET / HTTP/1.1" 200'), 3000)).toBe(true);
  renameSync(access, access + ".1");
  renameSync(errors, errors + ".1");
  server.proc.kill("SIGUSR1");
  // The log line that says so is the first one in the new error log.
  expect(await waitFor(() => existsSync(errors) && readFileSync(errors, "utf8").includes("Reopened the log files"), 5000)).toBe(true);
  expect(readFileSync(errors + ".1", "utf8")).toContain("Handling signal: usr1");
  const res = await exchange(server.port, "GET /?name=rotated HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  expect(res.responses[0].body.toString()).toBe("Hello, rotated!");
  expect(await waitFor(() => existsSync(access) && readFileSync(access, "utf8").includes("name=rotated"), 3000)).toBe(true);
  expect(readFileSync(access + ".1", "utf8")).not.toContain("name=rotated");
  expect(readFileSync(access + ".1", "utf8").split("\n").filter(Boolean).length).toBe(1);
  server.proc.kill("SIGTERM");
  expect(await server.exited).toBe(0);
});

test("SIGUSR2 (gunicorn's binary upgrade) is logged and changes nothing: same process, same workers, still serving", async () => {
  const server = await startPy("apps/hello.py", ["-w", "1"]);
  const before = server.workers();
  server.proc.kill("SIGUSR2");
  expect(await server.waitForOutput(/Handling signal: usr2; ignored: bunicorn does not re-execute itself/)).toBe(true);
  expect(bodyText(await request(server.port, "/"))).toBe("Hello, World!");
  expect(server.workers()).toEqual(before);
  expect((await stopPy(server, "SIGTERM")).code).toBe(0);
});

test("SIGWINCH without --daemon is ignored (a terminal was resized): same workers, still serving", async () => {
  const server = await startPy("apps/hello.py", ["-w", "1", "--log-level", "debug"]);
  const before = server.workers();
  server.proc.kill("SIGWINCH");
  expect(await server.waitForOutput(/Handling signal: winch; ignored \(not daemonized\)/)).toBe(true);
  expect(bodyText(await request(server.port, "/"))).toBe("Hello, World!");
  expect(server.workers()).toEqual(before);
  expect((await stopPy(server, "SIGTERM")).code).toBe(0);
});

test("SIGWINCH under --daemon: the workers stop gracefully, the front keeps its port; SIGTTIN starts one again", async () => {
  const port = freePort();
  const pidfile = join(dir, "winch.pid"), errors = join(dir, "winch.log");
  const r = await runCli(["-D", "--pid", pidfile, "--error-logfile", errors, "-b", `127.0.0.1:${port}`, "-w", "2", "--python", PYTHON, join(ROOT, "apps", "hello.py")], { cwd: dir });
  expect(r.code).toBe(0);
  let pid = 0;
  const log = () => (existsSync(errors) ? readFileSync(errors, "utf8") : "");
  try {
    expect(await waitFor(() => /Workers ready: 2/.test(log()), 20_000)).toBe(true);
    pid = Number(readFileSync(pidfile, "utf8"));
    expect(workerPids(pid).length).toBe(2);
    process.kill(pid, "SIGWINCH");
    expect(await waitFor(() => workerPids(pid).length === 0, 10_000)).toBe(true);
    expect(await waitFor(() => log().includes("graceful stop of workers"), 3000)).toBe(true);
    expect(isAlive(pid)).toBe(true);
    expect(await isListening(port)).toBe(true);
    process.kill(pid, "SIGTTIN");
    expect(await waitFor(() => workerPids(pid).length === 1, 10_000)).toBe(true);
    expect(bodyText(await request(port, "/"))).toBe("Hello, World!");
  } finally {
    if (pid > 0 && isAlive(pid)) process.kill(pid, "SIGTERM");
  }
  expect(await waitFor(() => !isAlive(pid) && childPids(pid).length === 0, 10_000)).toBe(true);
}, 40_000);

test("SIGHUP re-reads the config file: TTIN's count survives an unchanged file, a changed workers count applies, a changed request-line limit is logged as needing a restart", async () => {
  const conf = join(dir, "hup.conf.py");
  writeFileSync(conf, "workers = 1\nloglevel = 'info'\n");
  const server = await startPy("apps/hello.py", ["-c", conf]);
  expect(server.workers().length).toBe(1);
  // TTIN's worker survives a HUP that finds the file unchanged: only what the file changed applies.
  server.proc.kill("SIGTTIN");
  expect(await waitFor(() => server.workers().length === 2, 10_000)).toBe(true);
  server.proc.kill("SIGHUP");
  expect(await server.waitForOutput(/Reloaded \(SIGHUP\)/, "stderr", 20_000)).toBe(true);
  expect(server.stderr()).toContain("Reloading: starting 2 new workers");
  expect(server.stderr()).not.toContain("Reloading: workers");
  writeFileSync(conf, "workers = 3\nlimit_request_line = 2000\nloglevel = 'info'\n");
  server.proc.kill("SIGHUP");
  expect(await server.waitForOutput(/Reloaded \(SIGHUP\)[^]*Reloaded \(SIGHUP\)/, "stderr", 20_000)).toBe(true);
  expect(server.stderr()).toContain("Reloading: workers = 3");
  expect(server.stderr()).toContain("Reloading: limit_request_line changed; it takes effect on restart");
  expect(await waitFor(() => server.workers().length === 3, 10_000)).toBe(true);
  expect(await isListening(server.port)).toBe(true);
  // A file that no longer parses changes nothing; the reload still replaces the workers.
  writeFileSync(conf, "workers = (\n");
  const old = server.workers();
  server.proc.kill("SIGHUP");
  expect(await server.waitForOutput(/(Reloaded \(SIGHUP\)[^]*){3}/, "stderr", 20_000)).toBe(true);
  expect(server.stderr()).toMatch(/Reloading: the config is not re-read: config file \S+hup\.conf\.py: line 1: SyntaxError/);
  expect(await waitFor(() => server.workers().length === 3 && old.every((p) => !isAlive(p)), 10_000)).toBe(true);
  expect((await stopPy(server, "SIGTERM")).code).toBe(0);
}, 40_000);
