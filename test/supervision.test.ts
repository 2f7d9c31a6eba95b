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
import { type HttpResponse, RawClient, header, readRssBytes, sleep } from "./helpers.ts";
import { type LoadResult, type PyServer, bodyText, fileText, isAlive, isListening, request, runLoad, startPy, stopPy, trackWorkers, waitFor, usePyFixture } from "./pyhelpers.ts";

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

test("a hung request with -t 1: 504 after the timeout, before a request sent later ends; worker replaced, the other worker keeps serving", async () => {
  const server = await startPy(PROBE, ["-w", "2", "-t", "1"]);
  const before = server.workers();
  expect(before.length).toBe(2);
  const events: string[] = [];
  const hung = request(server.port, "/hang", { timeoutMs: 10_000 }).then((res) => { events.push(`hang ${res.status}`); return res; });
  await sleep(200);
  // Sent after the hang began, so the other worker answers them, one after the other (each
  // shorter than the timeout, which applies to them too): the first ends before the hang's
  // 1 s can have passed, the third after that second, the next 250 ms check and some.
  const others: HttpResponse[] = [];
  for (const [name, s] of [["a", 0.5], ["b", 0.7], ["c", 0.7]] as const) {
    const res = await request(server.port, `/sleep?s=${s}`, { timeoutMs: 5000 });
    events.push(`${name} ${res.status}`);
    others.push(res);
  }
  const res = await hung;
  expect(res.status).toBe(504);
  expect(events.filter((e) => !e.startsWith("b "))).toEqual(["a 200", "hang 504", "c 200"]);
  expect(events).toContain("b 200");
  for (const other of others) expect(before).toContain(Number(bodyText(other)));
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

test("--max-requests counts the requests a worker ran, not one whose client left before it started", async () => {
  const server = await startPy(PROBE, ["-w", "1", "--max-requests", "3"]);
  const running = request(server.port, "/sleep?s=0.6");
  await sleep(10);
  // Sent to the worker behind the running one (pipelined), then abandoned: the worker drops it unstarted.
  const abandoned = await RawClient.connect(server.port);
  abandoned.write("GET /pid HTTP/1.1\r\nHost: x\r\n\r\n");
  await sleep(150);
  abandoned.destroy();
  const pid = bodyText(await running);
  // The worker ran one request so far: two more, and it is recycled after the second.
  expect(bodyText(await request(server.port, "/pid"))).toBe(pid);
  expect(bodyText(await request(server.port, "/pid"))).toBe(pid);
  expect(await waitFor(() => !isAlive(Number(pid)), 5000)).toBe(true);
  expect(bodyText(await request(server.port, "/pid"))).not.toBe(pid);
}, 20_000);

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
  const load: LoadResult = { ok: 0, failures: [], bodies: [] };
  let shouldStop = false;
  const loader = runLoad(server.port, { target: "/", concurrency: 4, shouldStop: () => shouldStop }, load);
  const answered = (count: number) => waitFor(() => load.bodies.length >= count || load.failures.length > 0, 10_000);
  expect(await answered(20)).toBe(true);
  // The edit alone changes nothing: the answers after it, up to the SIGHUP, are the old version.
  writeFileSync(appFile, source("version-two"));
  expect(await answered(load.bodies.length + 20)).toBe(true);
  const atHup = load.bodies.length;
  server.proc.kill("SIGHUP");
  // The old workers exit once the new ones took over; the load goes on after that.
  expect(await waitFor(() => server.workers().length === 2 && before.every((p) => !isAlive(p)), 10_000)).toBe(true);
  expect(await answered(load.bodies.length + 20)).toBe(true);
  shouldStop = true;
  await loader;
  expect(load.failures).toEqual([]);
  expect(load.bodies.slice(0, atHup)).toEqual(Array(atHup).fill("version-1"));
  expect(new Set(load.bodies)).toEqual(new Set(["version-1", "version-two"]));
  // Once the new workers took over, only the new version answers.
  expect(load.bodies.slice(-20)).toEqual(Array(20).fill("version-two"));
  expect(bodyText(await request(server.port, "/"))).toBe("version-two");
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
/**
 * What a front could leave in the temp dir: "bunicorn-" and a random suffix (mkdtemp's form).
 * Test fixtures ("bunicorn-sup-…", "bunicorn-tls-…", other test runs' on a shared machine)
 * name a purpose first, and are not counted.
 */
function bunicornTempEntries(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith("bunicorn-") && !/^bunicorn-[a-z]+-/.test(name));
}

test("kill -9 of the front: every worker exits, even one stuck in the app, while that app call is still asleep; no file is left", async () => {
  const before = bunicornTempEntries();
  const server = await startPy(PROBE, ["-w", "2"]);
  const workers = server.workers();
  expect(workers.length).toBe(2);
  const stuck = await RawClient.connect(server.port);
  stuck.write("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
  await sleep(300);
  server.proc.kill("SIGKILL");
  await server.exited;
  // /hang sleeps 100 s: a worker that waited for its app to return would still be alive at
  // this 10 s guard (a liveness bound, not a speed claim; worker.py checks its parent every 1 s).
  const allGone = await waitFor(() => workers.every((p) => !isAlive(p)), 10_000);
  expect({ allGone, alive: workers.filter(isAlive) }).toEqual({ allGone: true, alive: [] });
  expect(stuck.byteCount).toBe(0); // the app never answered
  expect(bunicornTempEntries().filter((name) => !before.includes(name))).toEqual([]);
  await stopPy(server);
}, 20_000);

test("overload: -w 1 --backlog 2 answers the request beyond the queue with 503 and Retry-After", async () => {
  const server = await startPy(PROBE, ["-w", "1", "--backlog", "2"]);
  const events: string[] = [];
  const send = (name: string, target: string) => request(server.port, target).then((res) => { events.push(`${name} ${res.status}`); return res; });
  const running = send("running", "/sleep?s=0.7");
  await sleep(200);
  const queued = [send("queued", "/sleep?s=0.1"), send("queued", "/sleep?s=0.1")];
  await sleep(200);
  const over = await send("over", "/pid");
  expect(over.status).toBe(503);
  expect(header(over, "retry-after")).toMatch(/^\d+$/);
  await Promise.all([running, ...queued]);
  // Refused at once, not after the queue drained: the 503 came before the running request's 200.
  expect(events).toEqual(["over 503", "running 200", "queued 200", "queued 200"]);
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
