// Test setup: a virtualenv in the clone (.venv) with the pinned packages of
// test/requirements.txt. Idempotent: re-runs only when the requirements changed.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dir, "..");
const venv = path.join(root, ".venv");
const requirements = path.join(root, "test", "requirements.txt");
const stamp = path.join(venv, ".requirements-installed");

function run(cmd: string[]): void {
  const result = Bun.spawnSync(cmd, { stdout: "inherit", stderr: "inherit" });
  if (result.exitCode !== 0) {
    console.error(`test setup: '${cmd.join(" ")}' failed with exit code ${result.exitCode}`);
    process.exit(1);
  }
}

const wanted = fs.readFileSync(requirements, "utf8");
if (!fs.existsSync(stamp) || fs.readFileSync(stamp, "utf8") !== wanted) {
  const python = Bun.which("python3") ?? "python3";
  if (!fs.existsSync(path.join(venv, "bin", "python"))) run([python, "-m", "venv", venv]);
  run([path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", requirements]);
  fs.writeFileSync(stamp, wanted);
}
console.error(`test setup: ${venv} ready`);
