// Supervision of Python workers by a real bunicorn process: crashes and hangs
// are answered (502, 504) and the worker replaced; --max-requests recycling,
// SIGHUP reload, SIGTERM and SIGTTIN/SIGTTOU lose no request; a killed front
// leaves no worker behind; the bounded queue answers 503 and never runs a
// request whose client left; a 1 GiB upload streams through in bounded memory.
// Worker pids come from /proc (children of the front) and from the app itself.
import { expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawClient, header, readRssBytes, sleep } from "./helpers.ts";
import { type PyServer, bodyText, fileText, isAlive, isListening, request, runLoad, startPy, stopPy, trackWorkers, waitFor, usePyFixture } from "./pyhelpers.ts";

const PROBE = "test/pyapps/probe.py";

let dir = "";
usePyFixture("bunicorn-sup-", (d) => { dir = d; });

/** Wait until the server has `count` workers and at least one is not in `old`; returns them. */
async function waitForReplacement(server: PyServer, old: number[], count: number, timeoutMs = 5000): Promise<number[]> {
  let now: number[] = [];
  await waitFor(() => {
    now = server.workers();
    return now.length === count && now.some((p) => !old.includes(p));
  }, timeoutMs);
  return now;
}

test("a worker that crashes mid-request: that client gets 502, the worker is replaced, others are served", async () => {
  const server = await startPy(PROBE, ["-w", "3"]);
  const before = server.workers();
  expect(before.length).toBe(3);
  // Two workers busy with slow requests; the crash goes to the idle third.
  const slow = [request(server.port, "/sleep?s=0.8"), request(server.port, "/sleep?s=0.8")];
  await sleep(200);
  const crashed = await request(server.port, "/crash");
  expect(crashed.status).toBe(502);
  const concurrent = await Promise.all(slow);
  expect(concurrent.map((r) => r.status)).toEqual([200, 200]);
  expect(before).toContain(Number(bodyText(concurrent[0])));

  const dead = before.filter((p) => !isAlive(p));
  expect(dead.length).toBe(1);
  const after = await waitForReplacement(server, before, 3);
  expect(after.length).toBe(3);
  expect(after).not.toContain(dead[0]);
  expect(server.stderr()).toMatch(new RegExp(`pid ${dead[0]}\\) died`));
  // The replacement serves.
  const pids = await Promise.all([1, 2, 3, 4, 5, 6].map(() => request(server.port, "/pid")));
  expect(pids.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
}, 20_000);

test("a hung request with -t 1: 504 within the timeout plus a second, worker replaced, the other worker keeps serving", async () => {
  const server = await startPy(PROBE, ["-w", "2", "-t", "1"]);
  const before = server.workers();
  expect(before.length).toBe(2);
  const started = performance.now();
  const hung = request(server.port, "/hang", { timeoutMs: 10_000 }).then((res) => ({ res, ms: performance.now() - started }));
  await sleep(200);
  // Sent after the hang began: the other worker answers it.
  const other = await request(server.port, "/pid", { timeoutMs: 3000 });
  expect(other.status).toBe(200);
  expect(before).toContain(Number(bodyText(other)));
  const { res, ms } = await hung;
  expect(res.status).toBe(504);
  expect(ms).toBeLessThan(2500);
  expect(ms).toBeGreaterThan(900);
  const after = await waitForReplacement(server, before, 2);
  expect(after.filter((p) => !before.includes(p)).length).toBe(1);
  expect(server.stderr()).toContain("WORKER TIMEOUT");
  expect((await request(server.port, "/pid")).status).toBe(200);
}, 20_000);

test("--max-requests 20 --max-requests-jitter 5: 300 keep-alive requests at concurrency 8, no failure, workers recycled", async () => {
  const server = await startPy(PROBE, ["-w", "2", "--max-requests", "20", "--max-requests-jitter", "5"]);
  const stopTracking = trackWorkers(server);
  const before = server.workers();
  const load = await runLoad(server.port, { target: "/pid", concurrency: 8, total: 300 });
  stopTracking();
  expect(load.failures).toEqual([]);
  expect(load.ok).toBe(300);
  const pids = new Set(load.bodies.map(Number));
  // No worker serves more than 25 requests: 300 requests need at least 12 of them.
  expect(pids.size).toBeGreaterThanOrEqual(12);
  const perPid = new Map<number, number>();
  for (const p of load.bodies.map(Number)) perPid.set(p, (perPid.get(p) ?? 0) + 1);
  expect(Math.max(...perPid.values())).toBeLessThanOrEqual(25);
  // Retired workers exit; two remain, none of them the first ones.
  expect(await waitFor(() => server.workers().length === 2, 5000)).toBe(true);
  for (const p of before) expect(isAlive(p)).toBe(false);
}, 60_000);

test("SIGHUP under steady load: no failed request, the edited app answers after", async () => {
  const appDir = join(dir, "reload");
  rmSync(appDir, { recursive: true, force: true });
  mkdirSync(appDir);
  const appFile = join(appDir, "reload_app.py");
  const source = (version: string) => `VERSION = b"${version}"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(VERSION)))])
    return [VERSION]
`;
  writeFileSync(appFile, source("version-1"));
  const server = await startPy("reload_app", ["-w", "2", "--chdir", appDir]);
  const before = server.workers();
  const startedAt = Date.now();
  let hupAt = 0;
  const loader = runLoad(server.port, { target: "/", concurrency: 4, shouldStop: () => Date.now() - startedAt > 3000 });
  await sleep(1000);
  writeFileSync(appFile, source("version-two"));
  server.proc.kill("SIGHUP");
  hupAt = Date.now() - startedAt;
  const load = await loader;
  expect(load.failures).toEqual([]);
  expect(load.ok).toBeGreaterThan(100);
  expect(new Set(load.bodies)).toEqual(new Set(["version-1", "version-two"]));
  // Once the new workers took over, only the new version answers.
  const lastOld = Math.max(...load.times.filter((_, i) => load.bodies[i] === "version-1"));
  expect(lastOld).toBeGreaterThanOrEqual(hupAt - 50);
  expect(load.bodies.slice(-20)).toEqual(Array(20).fill("version-two"));
  expect(bodyText(await request(server.port, "/"))).toBe("version-two");
  expect(await waitFor(() => server.workers().length === 2 && before.every((p) => !isAlive(p)), 5000)).toBe(true);
}, 30_000);

test("SIGTERM with a slow request in flight: it completes with 200, the server exits 0, no worker left", async () => {
  const server = await startPy(PROBE, ["-w", "2"]);
  const slow = request(server.port, "/sleep?s=1", { timeoutMs: 10_000 });
  await sleep(250);
  server.proc.kill("SIGTERM");
  await sleep(150);
  expect(await isListening(server.port)).toBe(false); // no new connections once stopping
  const res = await slow;
  expect(res.status).toBe(200);
  const { code, survivors } = await stopPy(server, "SIGTERM");
  expect(code).toBe(0);
  expect(survivors).toEqual([]);
}, 20_000);

/** The front's own entries in the temp dir (there should be none: its sockets are abstract). */
function bunicornTempEntries(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith("bunicorn-") && !name.startsWith("bunicorn-sup-"));
}

test("kill -9 of the front: every worker exits within about 2 s, even one stuck in the app; no file is left", async () => {
  const before = bunicornTempEntries();
  const server = await startPy(PROBE, ["-w", "2"]);
  const workers = server.workers();
  expect(workers.length).toBe(2);
  const stuck = await RawClient.connect(server.port);
  stuck.write("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
  await sleep(300);
  server.proc.kill("SIGKILL");
  await server.exited;
  const killedAt = performance.now();
  const allGone = await waitFor(() => workers.every((p) => !isAlive(p)), 2500);
  const ms = performance.now() - killedAt;
  expect({ allGone, alive: workers.filter(isAlive) }).toEqual({ allGone: true, alive: [] });
  expect(ms).toBeLessThan(2500);
  expect(bunicornTempEntries().filter((name) => !before.includes(name))).toEqual([]);
  await stopPy(server);
}, 20_000);

test("overload: -w 1 --backlog 2 answers the request beyond the queue with 503 and Retry-After", async () => {
  const server = await startPy(PROBE, ["-w", "1", "--backlog", "2"]);
  const running = request(server.port, "/sleep?s=0.7");
  await sleep(200);
  const queued = [request(server.port, "/sleep?s=0.1"), request(server.port, "/sleep?s=0.1")];
  await sleep(200);
  const started = performance.now();
  const over = await request(server.port, "/pid");
  expect(over.status).toBe(503);
  expect(header(over, "retry-after")).toMatch(/^\d+$/);
  expect(performance.now() - started).toBeLessThan(500); // refused at once, not after the queue drained
  expect((await running).status).toBe(200);
  expect((await Promise.all(queued)).map((r) => r.status)).toEqual([200, 200]);
}, 20_000);

test("a queued request whose client disconnected is never run", async () => {
  const server = await startPy(PROBE, ["-w", "1"]);
  const log = join(dir, "queue-log");
  const first = request(server.port, `/append?log=${log}&id=first&s=0.8`);
  await sleep(200);
  const leaver = await RawClient.connect(server.port);
  leaver.write(`GET /append?log=${log}&id=left HTTP/1.1\r\nHost: t\r\n\r\n`);
  await sleep(150);
  leaver.destroy();
  await sleep(50);
  const last = request(server.port, `/append?log=${log}&id=last`);
  expect((await first).status).toBe(200);
  expect(bodyText(await last)).toBe("last");
  await sleep(300);
  expect(fileText(log).split("\n").filter(Boolean)).toEqual(["first", "last"]);
}, 20_000);

test("SIGTTIN adds a worker process, SIGTTOU removes one", async () => {
  const server = await startPy(PROBE, ["-w", "1"]);
  expect(server.workers().length).toBe(1);
  server.proc.kill("SIGTTIN");
  expect(await waitFor(() => server.workers().length === 2, 10_000)).toBe(true);
  server.proc.kill("SIGTTIN");
  expect(await waitFor(() => server.workers().length === 3, 10_000)).toBe(true);
  const three = server.workers();
  server.proc.kill("SIGTTOU");
  expect(await waitFor(() => server.workers().length === 2, 10_000)).toBe(true);
  // (an exiting process loses its cmdline a moment before it is gone: wait for that too)
  expect(await waitFor(() => three.filter(isAlive).length === 2, 5_000)).toBe(true);
  // Both remaining workers serve: two concurrent requests land on two pids (once the newest
  // worker has booted; until then the pool may queue both on one, so try a few times).
  let pids = new Set<number>();
  for (let attempt = 0; attempt < 10 && pids.size < 2; attempt++) {
    const busy = await Promise.all([1, 2].map(() => request(server.port, "/sleep?s=0.2")));
    expect(busy.map((r) => r.status)).toEqual([200, 200]);
    pids = new Set(busy.map((r) => Number(bodyText(r))));
  }
  expect([...pids].sort((a, b) => a - b)).toEqual(server.workers());
}, 20_000);

test("a 1 GiB upload read in 64 KiB pieces: right size and hash, front and worker RSS stay bounded", async () => {
  const server = await startPy(PROBE, ["-w", "1", "--limit-request-body", String(2 * 1024 * 1024 * 1024)]);
  const [workerPid] = server.workers();
  const BLOCK_BYTES = 1024 * 1024;
  const BLOCKS = 1024;
  const total = BLOCK_BYTES * BLOCKS;
  const RSS_LIMIT = 150 * 1024 * 1024;
  const peak = { front: 0, worker: 0 };
  const sample = () => {
    try {
      peak.front = Math.max(peak.front, readRssBytes(server.pid));
      peak.worker = Math.max(peak.worker, readRssBytes(workerPid));
    } catch { /* exited */ }
  };
  const sampler = setInterval(sample, 100);

  const client = await RawClient.connect(server.port);
  const started = performance.now();
  const hasher = new Bun.CryptoHasher("sha256");
  const block = randomBytes(BLOCK_BYTES);
  client.write(`POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: ${total}\r\nConnection: close\r\n\r\n`);
  for (let i = 0; i < BLOCKS && !client.isClosed; i++) {
    block.writeUInt32BE(i, 0); // every block differs
    hasher.update(block);
    client.write(block); // (copied: the next block may be written over it)
    await client.flush(30_000);
  }
  const sentMs = performance.now() - started;
  const [res] = await client.readResponses(1, ["POST"], 30_000);
  const totalMs = performance.now() - started;
  clearInterval(sampler);
  sample();
  client.destroy();
  console.error(`1 GiB upload: sent in ${(sentMs / 1000).toFixed(1)} s, answered after ${(totalMs / 1000).toFixed(1)} s (${(total / 1048576 / (totalMs / 1000)).toFixed(0)} MiB/s); peak RSS front ${(peak.front / 1048576).toFixed(0)} MiB, worker ${(peak.worker / 1048576).toFixed(0)} MiB`);
  expect(res?.status).toBe(200);
  const answer = JSON.parse(bodyText(res!));
  expect(answer).toEqual({ size: total, sha256: hasher.digest("hex"), biggest: 65536, pid: workerPid });
  expect(peak.front).toBeGreaterThan(0);
  expect(peak.front).toBeLessThan(RSS_LIMIT);
  expect(peak.worker).toBeLessThan(RSS_LIMIT);
}, 90_000);
