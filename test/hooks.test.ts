// gunicorn's server hooks from a config file, under a real bunicorn process: each fires
// where the README says (master hooks in one long-lived helper process, whose module state
// persists between them; worker hooks in the worker), in gunicorn's order; a request past
// --timeout logs where the worker's threads were and runs worker_abort before the kill.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sleep } from "./helpers.ts";
import { bodyText, request, startPy, stopPy, usePyFixture, waitFor } from "./pyhelpers.ts";

let dir = "";
usePyFixture("bunicorn-hooks-", (d) => { dir = d; });

const APP = `import os, time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        hang_here()
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

def hang_here():
    time.sleep(100)
`;

// Every hook appends "name pid detail" to $HOOK_LOG; master hooks also count, in module state.
const CONFIG = `import os
workers = 2
timeout = 1
calls = 0

def log(*words):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")

def master(name, *detail):
    global calls
    calls += 1
    log(name, os.getpid(), "calls=%d" % calls, *detail)

def on_starting(server): master("on_starting", "workers=%d" % server.cfg.workers)
def when_ready(server): master("when_ready", "front=%d" % server.pid)
def pre_fork(server, worker): master("pre_fork", "age=%s" % worker.age, "pid=%s" % worker.pid)
def child_exit(server, worker): master("child_exit", "pid=%s" % worker.pid)
def nworkers_changed(server, new_value, old_value): master("nworkers_changed", new_value, old_value)
def on_reload(server): master("on_reload")
def on_exit(server): master("on_exit")

def post_fork(server, worker): log("post_fork", os.getpid(), "pid=%s" % worker.pid, "age=%s" % worker.age)
def post_worker_init(worker): log("post_worker_init", os.getpid())
def pre_request(worker, req): log("pre_request", os.getpid(), req.method, req.path)
def post_request(worker, req, environ, resp): log("post_request", os.getpid(), req.path, resp.status_code, "sent=%d" % resp.sent)
def worker_abort(worker): log("worker_abort", os.getpid())
def worker_exit(server, worker): log("worker_exit", os.getpid())
`;

function hookLines(file: string): { name: string; pid: number; rest: string[] }[] {
  let text = "";
  try { text = readFileSync(file, "utf8"); } catch { /* not yet */ }
  return text.split("\n").filter(Boolean).map((line) => {
    const [name, pid, ...rest] = line.split(" ");
    return { name: name!, pid: Number(pid), rest };
  });
}

test("every hook fires where the README says, in gunicorn's order, with module state kept between master hooks", async () => {
  writeFileSync(join(dir, "hooked_app.py"), APP);
  writeFileSync(join(dir, "gunicorn.conf.py"), CONFIG);
  const file = join(dir, "hooks.log");
  const server = await startPy("hooked_app:application", ["--chdir", dir], { cwd: dir, env: { HOOK_LOG: file } });
  const first = server.workers();
  expect(first.length).toBe(2);
  const ok = await request(server.port, "/hello");
  expect(ok.status).toBe(200);
  const servedBy = Number(bodyText(ok));
  // A request past --timeout: 504, the stuck thread's traceback logged, worker_abort, then the kill.
  expect((await request(server.port, "/hang", { timeoutMs: 10_000 })).status).toBe(504);
  expect(await server.waitForOutput(/WORKER TIMEOUT: where each thread was/, "stderr", 5000)).toBe(true);
  expect(await waitFor(() => hookLines(file).some((l) => l.name === "child_exit"), 5000)).toBe(true);
  expect(await waitFor(() => server.workers().length === 2, 10_000)).toBe(true);
  server.proc.kill("SIGTTIN");
  expect(await waitFor(() => server.workers().length === 3, 10_000)).toBe(true);
  server.proc.kill("SIGHUP");
  expect(await waitFor(() => hookLines(file).some((l) => l.name === "on_reload"), 5000)).toBe(true);
  await sleep(1500); // the new generation takes over
  const { code } = await stopPy(server, "SIGTERM");
  expect(code).toBe(0);

  const lines = hookLines(file);
  const names = lines.map((l) => l.name);
  const stderr = server.stderr();
  // The traceback names the app function the thread was stuck in.
  expect(stderr).toMatch(/in hang_here/);
  // Master hooks: one process, not the front and no worker, counting up across every hook.
  const master = lines.filter((l) => ["on_starting", "when_ready", "pre_fork", "child_exit", "nworkers_changed", "on_reload", "on_exit"].includes(l.name));
  expect(new Set(master.map((l) => l.pid)).size).toBe(1);
  const helper = master[0]!.pid;
  expect(helper).not.toBe(server.pid);
  expect(server.seenWorkers.has(helper)).toBe(false);
  expect(master.map((l) => l.rest[0])).toEqual(master.map((_, i) => `calls=${i + 1}`));
  expect(master[0]!.rest).toEqual(["calls=1", "workers=2"]);
  expect(master[1]!.rest).toEqual(["calls=2", `front=${server.pid}`]);
  // gunicorn's order at start: on_starting, when_ready, then pre_fork before each worker's post_fork.
  expect(names.slice(0, 2)).toEqual(["on_starting", "when_ready"]);
  expect(names.indexOf("pre_fork")).toBeLessThan(names.indexOf("post_fork"));
  expect(lines.filter((l) => l.name === "pre_fork").slice(0, 2).map((l) => l.rest[2])).toEqual(["pid=None", "pid=None"]);
  // Worker hooks run in the workers: post_fork (worker.pid is its own pid), then post_worker_init.
  for (const pid of first) {
    const own = lines.filter((l) => l.pid === pid).map((l) => l.name);
    expect(own.slice(0, 2)).toEqual(["post_fork", "post_worker_init"]);
    expect(lines.find((l) => l.pid === pid && l.name === "post_fork")!.rest[0]).toBe(`pid=${pid}`);
  }
  expect(lines.filter((l) => l.pid === servedBy).map((l) => [l.name, ...l.rest]).filter((l) => l[0]!.endsWith("_request")))
    .toContainEqual(["post_request", "/hello", "200", `sent=${String(servedBy).length}`]);
  expect(lines.find((l) => l.name === "pre_request" && l.rest[1] === "/hello")!.rest).toEqual(["GET", "/hello"]);
  // The hung worker: pre_request /hang, then worker_abort; then child_exit for it in the helper.
  const abort = lines.find((l) => l.name === "worker_abort")!;
  expect(lines.some((l) => l.pid === abort.pid && l.name === "pre_request" && l.rest[1] === "/hang")).toBe(true);
  expect(names.indexOf("worker_abort")).toBeLessThan(names.indexOf("child_exit"));
  expect(lines.find((l) => l.name === "child_exit")!.rest[1]).toBe(`pid=${abort.pid}`);
  expect(lines.find((l) => l.name === "nworkers_changed")!.rest.slice(1)).toEqual(["3", "2"]);
  // On SIGTERM every worker still running says worker_exit, and on_exit is the very last.
  expect(lines.filter((l) => l.name === "worker_exit").length).toBeGreaterThanOrEqual(3);
  expect(names.at(-1)).toBe("on_exit");
}, 60_000);

test("an exception in pre_request answers 500; one in a master hook is logged and the server goes on", async () => {
  writeFileSync(join(dir, "hooked_app.py"), APP);
  const conf = join(dir, "raising.conf.py");
  writeFileSync(conf, `def pre_request(worker, req):\n    if req.path == "/refused":\n        raise RuntimeError("pre_request says no")\n\ndef when_ready(server):\n    server.log.warning("ready, says the hook")\n    raise ValueError("when_ready failed")\n`);
  const server = await startPy("hooked_app:application", ["-c", conf, "--chdir", dir, "-w", "1"], { cwd: dir });
  expect((await request(server.port, "/refused")).status).toBe(500);
  expect((await request(server.port, "/fine")).status).toBe(200);
  const stderr = server.stderr();
  expect(stderr).toMatch(/RuntimeError: pre_request says no/);
  expect(stderr).toMatch(/\[WARNING\] ready, says the hook/);
  expect(stderr).toMatch(/the when_ready hook raised:[\s\S]*ValueError: when_ready failed/);
  await stopPy(server, "SIGTERM");
}, 30_000);
