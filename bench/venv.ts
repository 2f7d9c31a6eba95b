// The virtualenv bench/.venv that every Python server of the benchmarks runs in:
// made here (with `python3 -m venv`, or $BENCH_PYTHON -m venv) and given the
// pinned servers and Flask from pip when they are missing or at other versions.
import fs from "node:fs";
import { join } from "node:path";
import { BenchError, ROOT, runCommand } from "./common.ts";

/** pip name → exact version. uWSGI is built from source by pip (needs a C compiler and Python.h). */
export const PINS = { gunicorn: "27.0.1", flask: "3.1.3", granian: "2.8.7", uwsgi: "2.0.31", waitress: "3.0.2" } as const;
export type Pinned = keyof typeof PINS;

export const VENV = join(ROOT, "bench", ".venv");
export const VENV_BIN = join(VENV, "bin");
export const VENV_PYTHON = join(VENV_BIN, "python");
const VENV_TIMEOUT_MS = 60_000;
const PIP_TIMEOUT_MS = 600_000; // uWSGI compiles for a minute or so
const PROBE_TIMEOUT_MS = 30_000;

export interface VenvInfo {
  python: string; // its Python's version
  versions: Record<Pinned, string | null>;
}

/** Versions of the pinned packages in the virtualenv, and its Python's (null: its interpreter does not run). */
async function probeVenv(): Promise<VenvInfo | null> {
  if (!fs.existsSync(VENV_PYTHON)) return null;
  const script = [
    "import importlib.metadata as m, platform, json",
    "def v(n):",
    "    try: return m.version(n)",
    "    except m.PackageNotFoundError: return None",
    `print(json.dumps({"python": platform.python_version(), "versions": {n: v(n) for n in ${JSON.stringify(Object.keys(PINS))}}}))`,
  ].join("\n");
  const result = await runCommand([VENV_PYTHON, "-c", script], PROBE_TIMEOUT_MS);
  if (result.code !== 0) return null;
  try {
    return JSON.parse(result.stdout);
  } catch {
    return null;
  }
}

function hasPins(probe: VenvInfo | null): probe is VenvInfo {
  return probe !== null && Object.entries(PINS).every(([name, version]) => probe.versions[name as Pinned] === version);
}

function tail(text: string): string {
  return text.trim().split("\n").slice(-20).join("\n");
}

/** Makes bench/.venv with the pinned packages unless it is there already; returns what it has. */
export async function ensureVenv(): Promise<VenvInfo> {
  let probe = await probeVenv();
  if (hasPins(probe)) return probe;
  if (probe === null) {
    const base = process.env.BENCH_PYTHON ?? "python3";
    console.error(`bench: making the virtualenv bench/.venv with ${base}`);
    const made = await runCommand([base, "-m", "venv", "--clear", VENV], VENV_TIMEOUT_MS);
    if (made.code !== 0) throw new BenchError(`bench: \`${base} -m venv bench/.venv\` failed (exit ${made.code}); set BENCH_PYTHON to a Python 3 with venv\n${tail(made.stderr)}`);
  }
  const pins = Object.entries(PINS).map(([name, version]) => `${name}==${version}`);
  console.error(`bench: installing ${pins.join(" ")} into bench/.venv with pip (uWSGI compiles: a minute or two)`);
  const installed = await runCommand([VENV_PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", ...pins], PIP_TIMEOUT_MS);
  if (installed.code !== 0) throw new BenchError(`bench: pip install ${pins.join(" ")} failed (exit ${installed.code})\n${tail(installed.stderr)}`);
  probe = await probeVenv();
  if (hasPins(probe)) return probe;
  throw new BenchError(`bench: bench/.venv still lacks ${pins.join(" ")} after pip install (has ${JSON.stringify((probe as VenvInfo | null)?.versions ?? null)})`);
}
