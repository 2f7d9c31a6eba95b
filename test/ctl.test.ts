// bunicorn ctl over --control-socket, against a real server: status and workers agree with
// /proc, add and remove change the worker processes, reload replaces them; the socket is mode
// 0600 and gone after the server exits; a bad command exits 2, an unreachable socket 1.
import { expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "./helpers.ts";
import { isAlive, startPy, stopPy, usePyFixture, waitFor } from "./pyhelpers.ts";

let dir = "";
usePyFixture("bunicorn-ctl-", (d) => { dir = d; });

async function ctl(socket: string, command: string): Promise<{ code: number | null; answer: any }> {
  const r = await runCli(["ctl", "--control-socket", socket, command]);
  return { code: r.code, answer: r.stdout === "" ? null : JSON.parse(r.stdout) };
}

test("ctl status|workers|add|remove|reload act on the running server, over a 0600 socket removed at exit", async () => {
  const socket = join(dir, "bunicorn.ctl");
  const server = await startPy("apps/hello.py", ["-w", "1", "--control-socket", socket]);
  expect(statSync(socket).mode & 0o777).toBe(0o600);
  const status = await ctl(socket, "status");
  expect(status.code).toBe(0);
  expect(status.answer).toMatchObject({ pid: server.pid, workers: 1 });
  const listed = await ctl(socket, "workers");
  expect(listed.answer.workers.map((w: any) => w.pid)).toEqual(server.workers());
  expect(listed.answer.workers[0].state).toBe("ready");

  expect((await ctl(socket, "add")).answer).toEqual({ ok: true, workers: 2 });
  expect(await waitFor(() => server.workers().length === 2, 10_000)).toBe(true);
  expect((await ctl(socket, "remove")).answer).toEqual({ ok: true, workers: 1 });
  expect(await waitFor(() => server.workers().length === 1, 10_000)).toBe(true);

  const before = server.workers();
  expect((await ctl(socket, "reload")).answer).toEqual({ ok: true, reloading: true });
  expect(await waitFor(() => before.every((p) => !isAlive(p)) && server.workers().length === 1, 10_000)).toBe(true);
  expect(await server.waitForOutput(/Reloaded \(bunicorn ctl\)/)).toBe(true);

  expect((await stopPy(server, "SIGTERM")).code).toBe(0);
  expect(existsSync(socket)).toBe(false);
  const gone = await runCli(["ctl", "--control-socket", socket, "status"]);
  expect(gone.code).toBe(1);
  expect(gone.stderr).toContain(`ctl: cannot reach ${socket}`);
}, 40_000);

test("ctl without a socket or with an unknown command: usage, exit 2", async () => {
  for (const args of [["ctl", "status"], ["ctl", "--control-socket", join(dir, "x.ctl"), "restart"]]) {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("usage: bunicorn ctl --control-socket PATH status|workers|reload|add|remove");
  }
});
