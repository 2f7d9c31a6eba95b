// What bench/run.ts found, as data (latest.json), as Markdown tables (latest.md
// and stdout), and the targets it is held to, each PASS or MISS.
import { formatBytes, median } from "./common.ts";
import type { ScenarioName } from "./scenarios.ts";
import type { ServerName } from "./servers.ts";

export type Unit = "req/s" | "MB/s";

export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The idle scenario's own findings for one server. */
export interface IdleDetail {
  alone: Spread | null; // req/s with no idle connections
  established: number;
  failedToOpen: number;
  firstError: string;
  setupMs: number | null;
  openAtEnd: number | null;
  rssBeforeBytes: number | null;
  rssWithIdleBytes: number | null;
  bytesPerIdleConn: number | null;
}

export interface ServerResult {
  server: ServerName;
  label: string;
  /** Why it has no (complete) result, or null. */
  failure: string | null;
  value: Spread | null; // in the measurement's unit
  p50Ms: number | null;
  p99Ms: number | null;
  errors: number; // socket errors and non-2xx answers over the rounds (wrk), failed transfers (stream)
  peakRssBytes: number | null; // of its whole process tree, during this measurement
  ratio: number | null; // its median / bunicorn's
  idle?: IdleDetail;
}

export interface MeasurementResult {
  name: string;
  title: string;
  kind: "wrk" | "stream" | "idle";
  unit: Unit;
  results: ServerResult[];
}

export interface ScenarioServer {
  label: string;
  shape: string; // processes × threads
  command: string;
  rssAtStartBytes: number | null;
}

export interface ScenarioResult {
  name: ScenarioName;
  title: string;
  servers: ScenarioServer[];
  measurements: MeasurementResult[];
  skipped: string | null;
  seconds: number;
}

export interface Target {
  text: string;
  pass: boolean | null; // null: not measured in this run
  detail: string;
}

export interface SuiteReport {
  date: string;
  /** loadAverage: the 1-minute load when the run began (other work on the machine skews the numbers). */
  machine: { cpu: string; cores: number; memoryGiB: number; os: string; loadAverage: number };
  versions: Record<string, string>;
  settings: { quick: boolean; rounds: number; durationS: number; warmupS: number; idleConnections: number; scenarios: string[]; servers: string[] };
  plannedSeconds: number;
  wallSeconds: number | null; // null while the run is still going
  scenarios: ScenarioResult[];
  targets: Target[];
}

// ---- numbers ----

export function spread(values: number[]): Spread | null {
  return values.length === 0 ? null : { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** Sets each result's ratio to bunicorn's median (null when either has none). */
export function setRatios(results: ServerResult[]): void {
  const base = results.find((r) => r.server === "bunicorn")?.value?.median;
  for (const r of results) r.ratio = base && r.value && r.failure === null ? r.value.median / base : null;
}

function num(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

function ms(value: number | null): string {
  if (value === null) return "–";
  return value < 1 ? `${(value * 1000).toFixed(0)} µs` : `${value.toFixed(value < 10 ? 2 : 1)} ms`;
}

function bytes(value: number | null): string {
  return value === null ? "–" : formatBytes(value);
}

function ratio(value: number | null): string {
  return value === null ? "–" : `${value.toFixed(2)}×`;
}

function count(value: number | null): string {
  return value === null ? "–" : value.toLocaleString("en-US");
}

// ---- Markdown ----

interface Column {
  header: string;
  right?: boolean;
  cell: (r: ServerResult) => string;
}

/** The throughput cells; a failed server shows its reason in the first. */
function valueColumns(header: string): Column[] {
  return [
    { header, right: true, cell: (r) => (r.failure !== null ? `failed: ${r.failure}` : r.value ? num(r.value.median) : "–") },
    { header: "min–max", cell: (r) => (r.value ? `${num(r.value.min)}–${num(r.value.max)}` : "–") },
  ];
}

const LATENCY: Column[] = [
  { header: "p50", right: true, cell: (r) => ms(r.p50Ms) },
  { header: "p99", right: true, cell: (r) => ms(r.p99Ms) },
];
const ERRORS_RSS_RATIO: Column[] = [
  { header: "errors", right: true, cell: (r) => count(r.errors) },
  { header: "peak RSS", right: true, cell: (r) => bytes(r.peakRssBytes) },
  { header: "× bunicorn", right: true, cell: (r) => ratio(r.ratio) },
];

function idleOpen(r: ServerResult): string {
  const idle = r.idle;
  if (!idle || idle.setupMs === null) return "–";
  const failed = idle.failedToOpen ? ` (${count(idle.failedToOpen)} failed: ${idle.firstError})` : "";
  return `${count(idle.established)}${failed} → ${count(idle.openAtEnd)}`;
}

const COLUMNS: Record<MeasurementResult["kind"], (unit: Unit) => Column[]> = {
  wrk: (unit) => [...valueColumns(`${unit} (median)`), ...LATENCY, ...ERRORS_RSS_RATIO],
  stream: (unit) => [...valueColumns(`${unit} (median)`), ...ERRORS_RSS_RATIO],
  idle: (unit) => [
    { header: `${unit} alone`, right: true, cell: (r) => (r.idle?.alone ? num(r.idle.alone.median) : "–") },
    ...valueColumns(`${unit} with idle conns`),
    { header: "with/alone", right: true, cell: (r) => ratio(r.idle?.alone && r.value ? r.value.median / r.idle.alone.median : null) },
    { header: "idle conns: open → at end", cell: idleOpen },
    { header: "RSS before → with idle", cell: (r) => (r.idle ? `${bytes(r.idle.rssBeforeBytes)} → ${bytes(r.idle.rssWithIdleBytes)}` : "–") },
    { header: "per idle conn", right: true, cell: (r) => bytes(r.idle?.bytesPerIdleConn ?? null) },
    ...LATENCY,
    ...ERRORS_RSS_RATIO,
  ],
};

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

export function measurementTable(m: MeasurementResult): string {
  const columns = [{ header: "server", cell: (r: ServerResult) => r.label } as Column, ...COLUMNS[m.kind](m.unit)];
  const lines = [
    `| ${columns.map((c) => c.header).join(" | ")} |`,
    `|${columns.map((c) => (c.right ? "---:" : "---")).join("|")}|`,
    ...m.results.map((r) => `| ${columns.map((c) => escapeCell(c.cell(r))).join(" | ")} |`),
  ];
  return lines.join("\n");
}

export function scenarioMarkdown(s: ScenarioResult): string {
  const out = [`## ${s.name}: ${s.title}`, ""];
  if (s.skipped) return [...out, `Skipped: ${s.skipped}`, ""].join("\n");
  out.push(`Processes × threads: ${s.servers.map((srv) => `${srv.label} ${srv.shape}`).join("; ")}.`, "");
  for (const m of s.measurements) out.push(`**${m.name}**: ${m.title}`, "", measurementTable(m), "");
  out.push("<details><summary>commands</summary>", "", ...s.servers.map((srv) => `- ${srv.label}: \`${srv.command}\``), "", "</details>", "");
  return out.join("\n");
}

export function targetsMarkdown(targets: Target[]): string {
  const mark = (t: Target) => (t.pass === null ? "n/a" : t.pass ? "PASS" : "MISS");
  return ["## Targets", "", ...targets.map((t) => `- **${mark(t)}** ${t.text}: ${t.detail}`), ""].join("\n");
}

export function reportMarkdown(report: SuiteReport, notes: string[]): string {
  const { machine, settings } = report;
  const versions = Object.entries(report.versions).map(([name, version]) => `${name} ${version}`).join(", ");
  const wall = report.wallSeconds === null ? "still running (partial results)" : `${report.wallSeconds.toFixed(0)} s`;
  const rounds = settings.quick
    ? "quick: one 1 s round per server, no warm-up"
    : `${settings.warmupS} s warm-up, then ${settings.rounds} rounds × ${settings.durationS} s per server, servers alternating (A B C … A B C …)`;
  return [
    "# bunicorn benchmark suite",
    "",
    `${report.date} · ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os} · load average ${machine.loadAverage.toFixed(2)} at the start · made by \`bun run bench\``,
    "",
    `Versions: ${versions}.`,
    "",
    `Rounds: ${rounds}; medians with min–max over the rounds. Wall time of the run: ${wall}.`,
    "",
    ...notes.map((n) => `- ${n}`),
    "",
    ...report.scenarios.map(scenarioMarkdown),
    targetsMarkdown(report.targets),
  ].join("\n");
}

// ---- targets ----

function findMeasurement(report: SuiteReport, scenario: ScenarioName, name?: string): MeasurementResult | null {
  const s = report.scenarios.find((sc) => sc.name === scenario && !sc.skipped);
  return s?.measurements.find((m) => name === undefined || m.name === name) ?? null;
}

function resultOf(m: MeasurementResult | null, server: ServerName): ServerResult | null {
  return m?.results.find((r) => r.server === server) ?? null;
}

/** A target that needs bunicorn's result; n/a when the measurement was not run. */
function withBunicorn(text: string, m: MeasurementResult | null, judge: (b: ServerResult, m: MeasurementResult) => Omit<Target, "text">): Target {
  const b = resultOf(m, "bunicorn");
  if (!m || !b) return { text, pass: null, detail: "not measured in this run" };
  if (b.failure !== null || !b.value) return { text, pass: false, detail: `bunicorn failed: ${b.failure ?? "no result"}` };
  return { text, ...judge(b, m) };
}

function aheadOfPeers(report: SuiteReport, scenario: ScenarioName, name: string): Target {
  const m = findMeasurement(report, scenario, name);
  return withBunicorn(`${name === scenario ? name : `${scenario} ${name}`}: bunicorn ahead of every peer`, m, (b, meas) => {
    const peers = meas.results.filter((r) => r.server !== "bunicorn");
    const ahead = peers.filter((p) => p.value && p.failure === null && p.value.median >= b.value!.median);
    const detail = peers.map((p) => `${p.label} ${p.failure !== null ? "failed" : ratio(p.ratio)}`).join(", ");
    return { pass: peers.length > 0 && ahead.length === 0, detail: peers.length ? `peers at ${detail} of bunicorn` : "no peer ran" };
  });
}

function atLeast(text: string, m: MeasurementResult | null, peer: ServerName, factor: number): Target {
  return withBunicorn(text, m, (b) => {
    const p = resultOf(m, peer);
    if (!p || p.failure !== null || !p.value) return { pass: null, detail: p ? `${p.label} failed: ${p.failure}` : `${peer} not measured` };
    const r = b.value!.median / p.value.median;
    return { pass: r >= factor, detail: `bunicorn ${num(b.value!.median)} vs ${p.label} ${num(p.value.median)} req/s: ${ratio(r)}` };
  });
}

const IDLE_THROUGHPUT_FLOOR = 0.9;
const IDLE_BYTES_PER_CONN = 4 * 1024;
const STREAM_FLOOR_MBPS = 500;

function idleTargets(report: SuiteReport): Target[] {
  const m = findMeasurement(report, "idle");
  const allHeld = (b: ServerResult) => b.idle !== undefined && b.idle.failedToOpen === 0 && b.idle.openAtEnd === b.idle.established;
  const held = (b: ServerResult) => (allHeld(b) ? "" : `; idle conns ${idleOpen(b)}`);
  return [
    withBunicorn("idle: req/s with the idle connections within 10% of hello alone", m, (b) => {
      const r = b.idle?.alone ? b.value!.median / b.idle.alone.median : null;
      return { pass: r !== null && r >= IDLE_THROUGHPUT_FLOOR && allHeld(b), detail: `${ratio(r)} (${num(b.value!.median)} vs ${b.idle?.alone ? num(b.idle.alone.median) : "–"} req/s)${held(b)}` };
    }),
    withBunicorn("idle: < 4 KiB of memory per idle connection", m, (b) => {
      const per = b.idle?.bytesPerIdleConn ?? null;
      return { pass: per !== null && per < IDLE_BYTES_PER_CONN && allHeld(b), detail: `${bytes(per)} per connection (RSS ${bytes(b.idle?.rssBeforeBytes ?? null)} → ${bytes(b.idle?.rssWithIdleBytes ?? null)})${held(b)}` };
    }),
  ];
}

function streamTargets(report: SuiteReport): Target[] {
  const scenario = report.scenarios.find((s) => s.name === "stream" && !s.skipped);
  const atStart = scenario?.servers.find((s) => s.label === "bunicorn")?.rssAtStartBytes ?? null;
  const rates = ["download", "upload"].map((name) =>
    withBunicorn(`stream: ${name} ≥ ${STREAM_FLOOR_MBPS} MB/s`, findMeasurement(report, "stream", name), (b) => ({
      pass: b.value!.median >= STREAM_FLOOR_MBPS,
      detail: `${num(b.value!.median)} MB/s (min–max ${num(b.value!.min)}–${num(b.value!.max)})`,
    })));
  // Bounded: the server never held the 100 MiB body; its RSS grew by less than the body's size.
  const peaks = scenario?.measurements.map((m) => resultOf(m, "bunicorn")?.peakRssBytes ?? null).filter((p): p is number => p !== null) ?? [];
  const bounded: Target = atStart === null || peaks.length === 0
    ? { text: "stream: memory bounded", pass: null, detail: "not measured in this run" }
    : {
      text: "stream: memory bounded (peak RSS grows by less than the 100 MiB body)",
      pass: Math.max(...peaks) - atStart < 100 * 1024 * 1024,
      detail: `bunicorn's process tree: ${bytes(atStart)} at start, peak ${bytes(Math.max(...peaks))}`,
    };
  return [...rates, bounded];
}

export function evaluateTargets(report: SuiteReport): Target[] {
  const ahead = ([["hello", "hello"], ["10k", "10k"], ["echo", "10 KiB"], ["echo", "1 MiB"], ["flask", "flask"], ["slow-io", "slow-io"], ["tls", "tls"]] as const)
    .map(([scenario, name]) => aheadOfPeers(report, scenario, name));
  return [
    ...ahead,
    atLeast("hello: bunicorn ≥ 2× gunicorn", findMeasurement(report, "hello"), "gunicorn", 2),
    atLeast("ts: bunicorn ≥ 0.9 × Bun.serve", findMeasurement(report, "ts"), "bunserve", 0.9),
    ...idleTargets(report),
    ...streamTargets(report),
  ];
}
