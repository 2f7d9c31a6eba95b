// --preload under a real bunicorn process: the app is imported once, in the master helper,
// which forks the workers (children of the helper, on socketpairs the front made and passed
// over); a killed worker is forked again without a new import; kill -9 of the front leaves
// no process; an app that cannot be imported stops the start with exit status 3.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bodyText, childPids, isAlive, request, startPy, stopPy, usePyFixture, waitFor } from "./pyhelpers.ts";
import { runCli } from "./helpers.ts";

let dir = "";
usePyFixture("bunicorn-preload-", (d) => { dir = d; });

const APP = `import os
with open(os.environ["IMPORT_LOG"], "a") as f:
    f.write("%d\\n" % os.getpid())

def application(environ, start_response):
    body = ("%d %d" % (os.getpid(), os.getppid())).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
`;

const imports = (file: string) => readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
const cmdline = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, "latin1"); } catch { return ""; } };

/** The front's master helper, and its children (the forked workers). */
function helperAndWorkers(frontPid: number): { helper: number | undefined; workers: number[] } {
  const helper = childPids(frontPid).find((p) => cmdline(p).includes("bunicorn-master") && isAlive(p));
  return { helper, workers: helper === undefined ? [] : childPids(helper).filter(isAlive) };
}

test("--preload: one import in the helper, workers forked from it, a killed worker forked again without a new import", async () => {
  writeFileSync(join(dir, "preload_app.py"), APP);
  const log = join(dir, "imports.log");
  const server = await startPy("preload_app:application", ["--preload", "-w", "3", "--chdir", dir], { env: { IMPORT_LOG: log } });
  const { helper, workers } = helperAndWorkers(server.pid);
  expect(helper).toBeDefined();
  expect(workers.length).toBe(3);
  expect(imports(log)).toEqual([helper!]);
  // Requests are served by forked workers: their parent is the helper.
  const [pid, ppid] = bodyText(await request(server.port, "/")).split(" ").map(Number);
  expect(workers).toContain(pid);
  expect(ppid).toBe(helper!);
  // A killed worker: its death relayed with the signal, another forked, still one import.
  process.kill(workers[0]!, "SIGKILL");
  expect(await server.waitForOutput(new RegExp(`pid ${workers[0]}\\) died: it was killed by signal SIGKILL`), "stderr", 5000)).toBe(true);
  expect(await waitFor(() => helperAndWorkers(server.pid).workers.length === 3, 10_000)).toBe(true);
  expect(helperAndWorkers(server.pid).workers).not.toContain(workers[0]);
  expect(imports(log)).toEqual([helper!]);
  expect((await request(server.port, "/")).status).toBe(200);
  const { code } = await stopPy(server, "SIGTERM");
  expect(code).toBe(0);
  expect(await waitFor(() => !isAlive(helper!) && workers.slice(1).every((p) => !isAlive(p)), 10_000)).toBe(true);
}, 30_000);

test("--preload: kill -9 of the front leaves neither the helper nor a worker", async () => {
  writeFileSync(join(dir, "preload_app.py"), APP);
  const server = await startPy("preload_app:application", ["--preload", "-w", "2", "--chdir", dir], { env: { IMPORT_LOG: join(dir, "imports2.log") } });
  const { helper, workers } = helperAndWorkers(server.pid);
  expect(workers.length).toBe(2);
  await stopPy(server, "SIGKILL");
  // A liveness bound only: the helper watches its parent, the workers their channels.
  expect(await waitFor(() => [helper!, ...workers].every((p) => !isAlive(p)), 10_000)).toBe(true);
}, 30_000);

test("--preload with an app that cannot be imported: the traceback once, exit 3, no worker", async () => {
  writeFileSync(join(dir, "broken_preload.py"), "raise RuntimeError('preload-marker')\n");
  const r = await runCli(["broken_preload:application", "--preload", "-b", "127.0.0.1:0", "--chdir", dir, "--python", join(import.meta.dir, "..", ".venv", "bin", "python")], { timeoutMs: 20_000 });
  expect(r.code).toBe(3);
  expect(r.stderr.split("RuntimeError: preload-marker").length - 1).toBe(1);
  expect(r.stderr).not.toMatch(/Booting worker/);
}, 30_000);
