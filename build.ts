// Builds the single-file executable: `bun build.ts` compiles server.ts (with
// bridge.ts and the worker.py it embeds with `import ... with { type: "text" }`) into
// dist/bunicorn, prints its size, then runs `dist/bunicorn --version` as a
// smoke test. Exits 1 when the build or the smoke test fails.
import { statSync } from "node:fs";
import { join } from "node:path";

const ROOT = import.meta.dir;
const ENTRY = join(ROOT, "server.ts");
const OUTFILE = join(ROOT, "dist", "bunicorn");
const SMOKE_TIMEOUT_MS = 10_000;

function formatSize(bytes: number): string {
  return `${bytes} bytes (${(bytes / 1024 / 1024).toFixed(1)} MiB)`;
}

/** Compiles server.ts; returns false (after printing why) on failure. */
async function compileServer(): Promise<boolean> {
  try {
    // `outfile` must sit inside `compile`: at the top level it is ignored and
    // the binary lands in the working directory.
    const result = await Bun.build({ entrypoints: [ENTRY], compile: { outfile: OUTFILE } });
    for (const log of result.logs) console.error(String(log));
    return result.success;
  } catch (err) {
    // Bun.build throws an AggregateError of BuildMessages when the build fails.
    const errors = err instanceof AggregateError ? err.errors : [err];
    for (const e of errors) console.error(e);
    return false;
  }
}

/** Runs `dist/bunicorn --version`; returns the line it printed, or null. */
async function runSmokeTest(): Promise<string | null> {
  const child = Bun.spawn([OUTFILE, "--version"], { stdout: "pipe", stderr: "pipe", timeout: SMOKE_TIMEOUT_MS });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) {
    console.error(`build: ${OUTFILE} --version exited ${code}\n${stderr}`);
    return null;
  }
  return (stdout.trim() || stderr.trim()).split("\n")[0];
}

async function main(): Promise<number> {
  const started = performance.now();
  if (!(await compileServer())) {
    console.error("build: failed");
    return 1;
  }
  const size = statSync(OUTFILE).size;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`build: wrote ${OUTFILE}, ${formatSize(size)} in ${seconds}s`);
  const version = await runSmokeTest();
  if (version === null) return 1;
  console.log(`build: smoke test ok: ${version}`);
  return 0;
}

process.exit(await main());
