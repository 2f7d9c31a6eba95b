// --reload over a real process (development only): an edit to the app's .py file, and a
// change to a file matched by --reload-extra-file, each reload the workers the way SIGHUP
// does; the answers after an edit come from the edited code. No timing is asserted: each step
// waits for the outcome (new workers, the new body) with a generous bound.
import { expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bodyText, isAlive, request, startPy, stopPy, usePyFixture, waitFor } from "./pyhelpers.ts";

let dir = "";
usePyFixture("bunicorn-reload-", (d) => { dir = d; });

const source = (version: string) => `VERSION = b"${version}"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(VERSION)))])
    return [VERSION]
`;

/** Ask until the body is `expected` (a reload takes its time); the last body seen. */
async function bodyBecomes(port: number, expected: string, timeoutMs = 15_000): Promise<string> {
  let last = "";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    last = bodyText(await request(port, "/"));
    if (last === expected) break;
    await Bun.sleep(100);
  }
  return last;
}

test("--reload: editing the app's module reloads the workers and the new code answers; so does a --reload-extra-file glob", async () => {
  const appDir = join(dir, "app");
  mkdirSync(join(appDir, "conf"), { recursive: true });
  writeFileSync(join(appDir, "reload_app.py"), source("one"));
  writeFileSync(join(appDir, "conf", "site.ini"), "a = 1\n");
  const server = await startPy("reload_app", ["-w", "1", "--chdir", appDir, "--reload", "--reload-extra-file", join(appDir, "conf", "*.ini")]);
  expect(await server.waitForOutput(/Reload: watching 2 files \(development only\)/)).toBe(true);
  expect(bodyText(await request(server.port, "/"))).toBe("one");
  const first = server.workers();

  writeFileSync(join(appDir, "reload_app.py"), source("two"));
  expect(await server.waitForOutput(/Worker reloading: \S*reload_app\.py modified/, "stderr", 10_000)).toBe(true);
  expect(await bodyBecomes(server.port, "two")).toBe("two");
  expect(await waitFor(() => first.every((p) => !isAlive(p)) && server.workers().length === 1, 10_000)).toBe(true);
  const second = server.workers();

  writeFileSync(join(appDir, "conf", "site.ini"), "a = 2\n");
  expect(await server.waitForOutput(/Worker reloading: \S*site\.ini modified/, "stderr", 10_000)).toBe(true);
  expect(await waitFor(() => second.every((p) => !isAlive(p)) && server.workers().length === 1, 10_000)).toBe(true);
  expect(bodyText(await request(server.port, "/"))).toBe("two");
  expect((await stopPy(server, "SIGTERM")).code).toBe(0);
}, 60_000);
