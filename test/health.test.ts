// --health-path, --drain-delay and --metrics-bind over real sockets, with Python workers;
// the metrics text is read by prometheus_client's own parser (in .venv).
import { afterEach, describe, expect, test } from "bun:test";
import path from "node:path";
import { RawClient, cleanUp, exchange, spawnServer } from "./helpers.ts";
import { PYAPPS, PYTHON, bodyText, freePort, request, startPy, stopAllPy, stopPy } from "./pyhelpers.ts";

afterEach(async () => {
  await stopAllPy();
  await cleanUp();
});

const PROBE = path.join(PYAPPS, "probe.py") + ":application";

describe("--health-path", () => {
  test("503 while no worker is ready (booting), 200 once one is", async () => {
    const server = await spawnServer([path.join(PYAPPS, "slow_boot.py") + ":app", "-b", "127.0.0.1:0", "--python", PYTHON, "-w", "1", "--health-path", "/healthz"],
      { env: { BOOT_SLEEP: "3", PYTHONDONTWRITEBYTECODE: "1" } });
    try {
      const booting = await request(server.port, "/healthz");
      expect([booting.status, bodyText(booting)]).toEqual([503, "unavailable: no worker ready\n"]);
      expect(await server.waitForOutput(/Workers ready/, "stderr", 20_000)).toBe(true);
      const ready = await request(server.port, "/healthz");
      expect([ready.status, bodyText(ready)]).toEqual([200, "ok: 1 worker(s) ready\n"]);
      expect(ready.headers.find(([n]) => n.toLowerCase() === "cache-control")?.[1]).toBe("no-store");
    } finally {
      server.proc.kill("SIGKILL");
      await server.exited;
    }
  });

  test("answered by the front while the only worker is busy (never queued behind Python)", async () => {
    const py = await startPy(PROBE, ["-w", "1", "--health-path", "/healthz"]);
    const busy = await RawClient.connect(py.port);
    busy.write("GET /sleep?s=3 HTTP/1.1\r\nHost: x\r\n\r\n");
    await Bun.sleep(200);
    const health = await request(py.port, "/healthz");
    expect(health.status).toBe(200);
    expect(busy.responses(["GET"]).length).toBe(0); // the health answer came while /sleep still ran
    // Other paths still reach the app.
    await busy.readResponses(1, ["GET"], 10_000);
    expect(busy.responses(["GET"])[0].status).toBe(200);
    busy.destroy();
  });

  test("SIGTERM: --drain-delay of 503 on the health path while other requests are served, then exit", async () => {
    const py = await startPy(PROBE, ["-w", "1", "--health-path", "/healthz", "--drain-delay", "3"]);
    const kept = await RawClient.connect(py.port);
    expect((await kept.request("/pid")).status).toBe(200);
    py.proc.kill("SIGTERM");
    expect(await py.waitForOutput(/answers 503 for 3s \(--drain-delay\)/, "stderr", 5000)).toBe(true);
    const health = await request(py.port, "/healthz");
    expect([health.status, bodyText(health)]).toEqual([503, "unavailable: draining\n"]);
    expect((await kept.request("/pid")).status).toBe(200); // a kept-alive connection is still served
    expect((await request(py.port, "/pid")).status).toBe(200); // and so is a new one
    kept.destroy();
    expect(await py.exited).toBe(0);
    expect(py.stderr().indexOf("answers 503")).toBeLessThan(py.stderr().indexOf("Shutting down: Master"));
  });

  test("bad values exit 2", async () => {
    for (const args of [["--health-path", "healthz"], ["--drain-delay", "x"], ["--static-map", "static"], ["--sendfile-root", "/x"]]) {
      const proc = Bun.spawn([process.execPath, path.join(import.meta.dir, "..", "server.ts"), PROBE, ...args], { stderr: "pipe", stdout: "ignore" });
      expect([args[0], await proc.exited]).toEqual([args[0], 2]);
      expect(await new Response(proc.stderr).text()).toContain(args[0]);
    }
  });
});

/** prometheus_client's parser, run on the text: families → samples, or it throws on a format error. */
async function parseMetrics(text: string): Promise<Record<string, { type: string; samples: [string, Record<string, string>, number][] }>> {
  const script = [
    "import sys, json",
    "from prometheus_client.parser import text_string_to_metric_families",
    "out = {}",
    "for f in text_string_to_metric_families(sys.stdin.read()):",
    "    out[f.name] = {'type': f.type, 'samples': [[s.name, s.labels, s.value] for s in f.samples]}",
    "print(json.dumps(out))",
  ].join("\n");
  const proc = Bun.spawn([PYTHON, "-c", script], { stdin: Buffer.from(text), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`prometheus_client could not parse the metrics:\n${err}\n${text}`);
  return JSON.parse(out);
}

const sample = (m: Awaited<ReturnType<typeof parseMetrics>>, family: string, name: string, labels: Record<string, string> = {}) =>
  m[family]?.samples.find(([n, l]) => n === name && Object.entries(labels).every(([k, v]) => l[k] === v))?.[2];

describe("--metrics-bind", () => {
  test("Prometheus text on its own listener: requests, latency, connections, workers, restarts, parse errors, bytes", async () => {
    const metricsPort = freePort();
    const py = await startPy(PROBE, ["-w", "1", "--metrics-bind", `127.0.0.1:${metricsPort}`]);
    for (let i = 0; i < 3; i++) expect((await request(py.port, "/pid")).status).toBe(200);
    expect((await request(py.port, "/nope")).status).toBe(404);
    await exchange(py.port, "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"); // two Hosts: a parse error (RFC 9112 §3.2)
    const pid = bodyText(await request(py.port, "/pid"));
    await exchange(py.port, "GET /crash HTTP/1.1\r\nHost: x\r\n\r\n"); // 502, and a restart by crash
    const next = await request(py.port, "/pid", { timeoutMs: 15_000 }); // waits for the replacement to be ready
    expect(bodyText(next)).not.toBe(pid);
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const m = await parseMetrics(await res.text());
    expect(sample(m, "bunicorn_requests", "bunicorn_requests_total", { method: "GET", status: "2xx" })).toBe(5);
    expect(sample(m, "bunicorn_requests", "bunicorn_requests_total", { method: "GET", status: "4xx" })).toBe(1);
    expect(sample(m, "bunicorn_requests", "bunicorn_requests_total", { method: "GET", status: "5xx" })).toBe(1);
    expect(m.bunicorn_request_duration_seconds.type).toBe("histogram");
    expect(sample(m, "bunicorn_request_duration_seconds", "bunicorn_request_duration_seconds_count")).toBe(7);
    expect(sample(m, "bunicorn_request_duration_seconds", "bunicorn_request_duration_seconds_bucket", { le: "+Inf" })).toBe(7);
    const parseErrors = m.bunicorn_parse_errors.samples.filter(([n]) => n === "bunicorn_parse_errors_total");
    expect(parseErrors.length).toBe(1);
    expect(parseErrors[0][1].code).toMatch(/^[A-Z_]+$/);
    expect(sample(m, "bunicorn_worker_restarts", "bunicorn_worker_restarts_total", { reason: "crash" })).toBe(1);
    expect(sample(m, "bunicorn_worker_restarts", "bunicorn_worker_restarts_total", { reason: "timeout" })).toBe(0);
    expect(sample(m, "bunicorn_bridge_answers", "bunicorn_bridge_answers_total", { status: "502" })).toBe(1);
    expect(sample(m, "bunicorn_workers", "bunicorn_workers", { state: "ready" })).toBe(1);
    expect(sample(m, "bunicorn_requests_in_flight", "bunicorn_requests_in_flight")).toBe(0);
    expect(sample(m, "bunicorn_requests_queued", "bunicorn_requests_queued")).toBe(0);
    expect(sample(m, "bunicorn_connections_accepted", "bunicorn_connections_accepted_total")).toBe(8);
    expect(m.bunicorn_received_bytes.type).toBe("counter");
    expect(sample(m, "bunicorn_received_bytes", "bunicorn_received_bytes_total")).toBeGreaterThan(7 * 30);
    expect(sample(m, "bunicorn_sent_bytes", "bunicorn_sent_bytes_total")).toBeGreaterThan(7 * 100);
    expect(sample(m, "bunicorn_spooled_bytes", "bunicorn_spooled_bytes")).toBe(0);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).toBe(404);
    // The app's port does not answer /metrics itself: that path is the app's.
    expect(bodyText(await request(py.port, "/metrics"))).toContain("no such probe");
    await stopPy(py, "SIGTERM");
  });

  test("a timeout and a max-requests recycle are counted by reason", async () => {
    const metricsPort = freePort();
    const py = await startPy(PROBE, ["-w", "1", "--timeout", "1", "--max-requests", "2", "--metrics-bind", `127.0.0.1:${metricsPort}`]);
    expect((await request(py.port, "/pid")).status).toBe(200);
    expect((await request(py.port, "/pid")).status).toBe(200); // the 2nd: recycled
    expect(await py.waitForOutput(/served 2 requests; recycling/, "stderr", 10_000)).toBe(true);
    expect((await request(py.port, "/hang", { timeoutMs: 10_000 })).status).toBe(504);
    await Bun.sleep(500);
    const m = await parseMetrics(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    expect(sample(m, "bunicorn_worker_restarts", "bunicorn_worker_restarts_total", { reason: "max-requests" })).toBe(1);
    expect(sample(m, "bunicorn_worker_restarts", "bunicorn_worker_restarts_total", { reason: "timeout" })).toBe(1);
    expect(sample(m, "bunicorn_worker_restarts", "bunicorn_worker_restarts_total", { reason: "crash" })).toBe(0);
    await stopPy(py, "SIGTERM");
  });
});
