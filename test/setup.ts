// Test setup: the Debian packages the tests use as real peers (HAProxy, nginx, openssl,
// systemd-socket-activate), installed with apt when missing and we are root, and a virtualenv
// in the clone (.venv) with the pinned packages of test/requirements.txt. Idempotent: each
// step re-runs only when something is missing or the requirements changed.
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

/** A command of the tests' peers, and the Debian package that has it. */
const PEERS: [command: string, pkg: string][] = [
  ["haproxy", "haproxy"], // test/haproxy.test.ts, test/proxy-socket.test.ts (send-proxy-v2)
  ["nginx", "nginx"], // the static-file peer (bench) and its tests
  ["openssl", "openssl"], // throwaway certificates for the TLS tests
  ["systemd-socket-activate", "systemd"], // test/systemd.test.ts
];
const hasCommand = (c: string) => Bun.which(c) !== null || fs.existsSync(`/usr/sbin/${c}`) || fs.existsSync(`/usr/bin/${c}`);
const missing = PEERS.filter(([c]) => !hasCommand(c)).map(([, pkg]) => pkg);
if (missing.length > 0) {
  if (process.getuid?.() === 0) {
    console.error(`test setup: installing ${missing.join(" ")} (Debian packages)`);
    run(["apt-get", "update", "-qq"]);
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing]);
  } else {
    console.error(`test setup: missing ${missing.join(", ")}: install them (apt-get install ${missing.join(" ")}); the tests that use them will fail`);
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
