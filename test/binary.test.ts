// The single-file executable: `bun build.ts` makes dist/bunicorn, which must
// serve a TypeScript app from disk just as `bun server.ts` does.
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, cleanUp, exchange, spawnServer } from "./helpers.ts";

const BINARY = join(ROOT, "dist", "bunicorn");
const BUILD_TIMEOUT_MS = 60_000;

afterAll(cleanUp);

test("bun build.ts produces dist/bunicorn, which serves apps/hello.ts", async () => {
  const build = Bun.spawn([process.execPath, join(ROOT, "build.ts")], { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: BUILD_TIMEOUT_MS });
  const [stdout, stderr, code] = await Promise.all([new Response(build.stdout).text(), new Response(build.stderr).text(), build.exited]);
  if (code !== 0) throw new Error(`bun build.ts exited ${code}\n${stdout}\n${stderr}`);
  expect(existsSync(BINARY)).toBe(true);

  const server = await spawnServer(["apps/hello.ts", "-b", "127.0.0.1:0"], { cmd: [BINARY], readyTimeoutMs: 15_000 });
  const plain = await exchange(server.port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  expect(plain.responses[0].statusLine).toBe("HTTP/1.1 200 OK");
  expect(plain.responses[0].body.toString()).toBe("Hello, World!");
  const named = await exchange(server.port, "GET /?name=Bun HTTP/1.1\r\nHost: t\r\n\r\n");
  expect(named.responses[0].body.toString()).toBe("Hello, Bun!");
}, 90_000);

test("dist/bunicorn alone (its embedded worker.py) serves apps/hello.py from another directory", async () => {
  expect(existsSync(BINARY)).toBe(true); // built by the test above
  const cwd = mkdtempSync(join(tmpdir(), "bunicorn-bin-"));
  copyFileSync(join(ROOT, "apps", "hello.py"), join(cwd, "hello.py"));
  const server = await spawnServer(["hello:application", "-w", "1", "-b", "127.0.0.1:0"], { cmd: [BINARY], cwd, readyTimeoutMs: 15_000 });
  try {
    const named = await exchange(server.port, "GET /?name=Python HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(named.responses[0].statusLine).toBe("HTTP/1.1 200 OK");
    expect(named.responses[0].body.toString()).toBe("Hello, Python!");
  } finally {
    await cleanUp(); // the server first: it runs in the directory
    rmSync(cwd, { recursive: true, force: true });
  }
}, 30_000);
