// Memory of 4 Python workers of a Django app, with and without --preload: the sum of the
// workers' (and, with --preload, the master helper's) PSS and USS from /proc/PID/smaps_rollup,
// after every worker has served requests. PSS splits shared pages among their sharers, so it
// shows what copy-on-write saves; RSS would count shared pages once per process.
//
//   bun bench/preload_memory.ts [--rounds 3]
//
// Uses test/pyapps/django_app.py and the test virtualenv (.venv, made by `bun test/setup.ts`).
// Each server is started here on 127.0.0.1 and stopped by its own pid.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const PYTHON = join(ROOT, ".venv", "bin", "python");
const ROUNDS = Number(process.argv[process.argv.indexOf("--rounds") + 1] || 3) || 3;

function children(pid: number): number[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number).filter((p) => {
    try { return Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${p}/status`, "utf8"))![1]) === pid; } catch { return false; }
  });
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of children(pid)) out.push(c, ...descendants(c));
  return out;
}

/** kB of Pss and of private (USS) memory. */
function memory(pid: number): { pss: number; uss: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(text)?.[1] ?? 0);
  return { pss: kb("Pss"), uss: kb("Private_Clean") + kb("Private_Dirty") };
}

async function measure(preload: boolean): Promise<{ pss: number; uss: number; processes: number }> {
  const args = ["server.ts", "django_app:application", "--chdir", "test/pyapps", "-w", "4", "-b", "127.0.0.1:0", "--python", PYTHON, ...(preload ? ["--preload"] : [])];
  const proc = Bun.spawn(["bun", ...args], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
  let log = "";
  const reader = (async () => { for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) log += new TextDecoder().decode(chunk); })();
  const deadline = Date.now() + 30_000;
  while (!/Workers ready/.test(log) && Date.now() < deadline) await Bun.sleep(50);
  const port = Number(/Listening at: http:\/\/127\.0\.0\.1:(\d+)/.exec(log)?.[1]);
  try {
    // Enough requests, 8 at a time, that every worker has run Django's request path.
    for (let i = 0; i < 25; i++) await Promise.all(Array.from({ length: 8 }, () => fetch(`http://127.0.0.1:${port}/hello/bench`).then((r) => r.arrayBuffer())));
    await Bun.sleep(300);
    const pythons = descendants(proc.pid).filter((p) => { try { return readFileSync(`/proc/${p}/cmdline`, "latin1").includes("bunicorn"); } catch { return false; } });
    let pss = 0, uss = 0;
    for (const p of pythons) { const m = memory(p); pss += m.pss; uss += m.uss; }
    return { pss, uss, processes: pythons.length };
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
    await reader;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results: Record<string, { pss: number[]; uss: number[]; processes: number }> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const preload of [false, true]) {
    const name = preload ? "--preload" : "without";
    const r = await measure(preload);
    (results[name] ??= { pss: [], uss: [], processes: r.processes }).pss.push(r.pss);
    results[name].uss.push(r.uss);
  }
}
console.log("| 4 Django workers | processes | PSS, sum (MiB) | USS, sum (MiB) |\n|---|---:|---:|---:|");
for (const [name, r] of Object.entries(results)) {
  console.log(`| ${name} | ${r.processes} | ${(median(r.pss) / 1024).toFixed(1)} | ${(median(r.uss) / 1024).toFixed(1)} |`);
}
