// Settings the way gunicorn reads them: the command line (argparse's forms), GUNICORN_CMD_ARGS,
// WEB_CONCURRENCY, PORT and the Python config file, in gunicorn's order. Cases are data with one
// runner each; the config file, the precedence and a typical deployment run as real processes,
// side by side with gunicorn from .venv (test/requirements.txt pins it).
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Config, SETTINGS, UsageError, parseArgs, splitShellWords } from "../server.ts";
import { ROOT, runCli } from "./helpers.ts";
import { PYTHON, freePort, isAlive, isListening, request, usePyFixture, waitFor } from "./pyhelpers.ts";

let dir = "";
usePyFixture("bunicorn-config-", (d) => { dir = d; });
const GUNICORN = join(ROOT, ".venv", "bin", "gunicorn");
const VENV = join(ROOT, ".venv");

describe("the settings table", () => {
  const tsv = readFileSync("/work/shared/gunicorn-settings.tsv", "utf8").split("\n").filter((l) => l !== "").map((l) => l.split("\t"));

  test("has each of gunicorn's 119 settings once, with gunicorn's flags", () => {
    expect(tsv.length).toBe(119);
    for (const [name, , flags] of tsv) {
      const rows = SETTINGS.filter((s) => s.name === name);
      expect(rows.length).toBe(1);
      const expected = flags === "(file)" ? [] : flags.split(" ");
      for (const flag of expected) expect(rows[0].flags).toContain(flag);
    }
    expect(SETTINGS.filter((s) => s.name !== null).length).toBe(119);
  });

  test("no flag belongs to two settings", () => {
    const flags = SETTINGS.flatMap((s) => s.flags);
    expect(new Set(flags).size).toBe(flags.length);
  });

  test("the README's table has one row per setting, with the table's status", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    for (const s of SETTINGS.filter((x) => x.name !== null)) {
      const row = new RegExp(`^\\| \`${s.name}\` \\|[^|]*\\| ${s.status} \\|`, "m");
      expect({ name: s.name, found: row.test(readme) }).toEqual({ name: s.name, found: true });
    }
  });
});

// [name, argv, env, the settings expected]
const ACCEPTED: [string, string[], Record<string, string>, Partial<Config>][] = [
  ["-w4 (value attached)", ["-w4"], {}, { workers: 4 }],
  ["--preload", ["--preload"], {}, { preloadApp: true }],
  ["--proxy-protocol alone, last: auto", ["--proxy-protocol"], {}, { proxyProtocol: "auto", app: "app:app" }],
  ["--proxy-protocol alone, before a flag: auto", ["--proxy-protocol", "-w", "2"], {}, { proxyProtocol: "auto", workers: 2 }],
  ["--proxy-protocol v2", ["--proxy-protocol", "v2"], {}, { proxyProtocol: "v2", app: "app:app" }],
  ["--proxy-protocol=v1", ["--proxy-protocol=v1"], {}, { proxyProtocol: "v1" }],
  ["FORWARDED_ALLOW_IPS as gunicorn reads it", [], { FORWARDED_ALLOW_IPS: "10.0.0.0/8,*" }, { forwardedAllowIps: "10.0.0.0/8,*" }],
  ["--forwarded-allow-ips beats FORWARDED_ALLOW_IPS", ["--forwarded-allow-ips", "::1"], { FORWARDED_ALLOW_IPS: "*" }, { forwardedAllowIps: "::1" }],
  ["TLS flags", ["--certfile", "c.pem", "--keyfile", "k.pem", "--ca-certs", "ca.pem", "--cert-reqs", "2", "--ciphers", "ECDHE+AESGCM"], {}, { certfile: "c.pem", keyfile: "k.pem", caCerts: "ca.pem", certReqs: 2, ciphers: "ECDHE+AESGCM" }],
  ["-w 4", ["-w", "4"], {}, { workers: 4 }],
  ["-w=4", ["-w=4"], {}, { workers: 4 }],
  ["--workers=4", ["--workers=4"], {}, { workers: 4 }],
  ["--workers 4", ["--workers", "4"], {}, { workers: 4 }],
  ["a unique prefix: --thr 3", ["--thr", "3"], {}, { threads: 3 }],
  ["a unique prefix with =: --worker-cl=gthread", ["--worker-cl=gthread"], {}, { workerClass: "gthread" }],
  ["grouped short flags: -De A=1", ["-De", "A=1"], {}, { daemon: true, rawEnv: ["A=1"] }],
  ["grouped short flags, value attached: -Dw3", ["-Dw3"], {}, { daemon: true, workers: 3 }],
  ["gunicorn's spelling --limit-request-field_size", ["--limit-request-field_size", "100"], {}, { limitRequestFieldSize: 100 }],
  ["ours, --limit-request-field-size", ["--limit-request-field-size", "100"], {}, { limitRequestFieldSize: 100 }],
  ["--timeout 0 is no timeout", ["--timeout", "0"], {}, { timeoutS: 0 }],
  ["-t0", ["-t0"], {}, { timeoutS: 0 }],
  ["--keep-alive 0 turns keep-alive off", ["--keep-alive", "0"], {}, { keepAliveS: 0 }],
  ["-k sync", ["-k", "sync"], {}, { workerClass: "sync" }],
  ["-k gthread", ["-k", "gthread"], {}, { workerClass: "gthread" }],
  ["repeated -b", ["-b", "127.0.0.1:1", "-b", "unix:/tmp/x.sock"], {}, { binds: ["127.0.0.1:1", "unix:/tmp/x.sock"] }],
  ["--pythonpath a,b (gunicorn's commas)", ["--pythonpath", "a,b"], {}, { pythonpath: ["a", "b"] }],
  ["--umask 0o22", ["--umask", "0o22"], {}, { umask: 0o22 }],
  ["-m 18", ["-m", "18"], {}, { umask: 18 }],
  ["--umask=0x12", ["--umask=0x12"], {}, { umask: 18 }],
  ["-p FILE", ["-p", "/tmp/b.pid"], {}, { pidfile: "/tmp/b.pid" }],
  ["--check-config", ["--check-config"], {}, { checkConfig: true }],
  ["--reload with extra files", ["--reload", "--reload-extra-file", "conf/*.ini", "--reload-extra-file", "/etc/app.toml"], {}, { reload: true, reloadExtraFiles: ["conf/*.ini", "/etc/app.toml"] }],
  ["--reload-engine inotify (bunicorn polls)", ["--reload-engine", "inotify"], {}, { reloadEngine: "inotify" }],
  ["-u, -g, --initgroups", ["-u", "www-data", "-g", "33", "--initgroups"], {}, { user: "www-data", group: "33", initgroups: true }],
  ["WEB_CONCURRENCY", [], { WEB_CONCURRENCY: "3" }, { workers: 3 }],
  ["-w beats WEB_CONCURRENCY", ["-w", "2"], { WEB_CONCURRENCY: "3" }, { workers: 2 }],
  ["PORT binds 0.0.0.0:$PORT", [], { PORT: "5000" }, { binds: ["0.0.0.0:5000"] }],
  ["-b beats PORT", ["-b", "127.0.0.1:1"], { PORT: "5000" }, { binds: ["127.0.0.1:1"] }],
  ["GUNICORN_CMD_ARGS", [], { GUNICORN_CMD_ARGS: "-w 3 --env 'A=b c'" }, { workers: 3, rawEnv: ["A=b c"] }],
  ["the command line beats GUNICORN_CMD_ARGS", ["-w", "2"], { GUNICORN_CMD_ARGS: "-w 3" }, { workers: 2 }],
  ["GUNICORN_CMD_ARGS beats WEB_CONCURRENCY", [], { GUNICORN_CMD_ARGS: "-w 3", WEB_CONCURRENCY: "5" }, { workers: 3 }],
  ["--access-logformat with %% and brace atoms", ["--access-logformat", "%(h)s 100%% %({X-Id}i)s %({remote_user}e)s"], {}, { accessLogFormat: "%(h)s 100%% %({X-Id}i)s %({remote_user}e)s" }],
  ["--access-logformat json", ["--access-logformat", "json"], {}, { accessLogFormat: "json" }],
  ["--access-logformat json:ATOMS", ["--access-logformat", "json:h,s,{x-id}i"], {}, { accessLogFormat: "json:h,s,{x-id}i" }],
  ["--statsd-host HOST:PORT", ["--statsd-host", "localhost:9125"], {}, { statsdHost: "localhost:9125" }],
  ["--statsd-host HOST (port 8125)", ["--statsd-host", "statsd.internal"], {}, { statsdHost: "statsd.internal" }],
  ["--statsd-host [IPv6]:PORT", ["--statsd-host", "[::1]:8125"], {}, { statsdHost: "[::1]:8125" }],
  ["--capture-output", ["--capture-output"], {}, { captureOutput: true }],
];

// [name, argv, env, the message expected]
const REFUSED: [string, string[], Record<string, string>, RegExp][] = [
  ["-k gevent", ["-k", "gevent"], {}, /^-k: bunicorn has no gevent worker; use --threads$/],
  ["-k uvicorn.workers.UvicornWorker", ["-k", "uvicorn.workers.UvicornWorker"], {}, /WSGI apps only/],
  ["an ambiguous prefix", ["--wor", "2"], {}, /ambiguous option: --wor could match --workers, --worker-class/],
  ["an unknown long flag", ["--no-such-flag"], {}, /unrecognized option '--no-such-flag'/],
  ["an unknown short flag in a group", ["-Dx"], {}, /unrecognized option '-x'/],
  ["a flag without its value", ["-w"], {}, /-w needs a value/],
  ["a bool flag given a value", ["--daemon=1"], {}, /--daemon takes no value/],
  ["--workers=4=5", ["--workers=4=5"], {}, /--workers: expected a whole number/],
  ["--timeout -1", ["--timeout", "-1"], {}, /--timeout: expected seconds/],
  ["-e without =", ["-e", "NOEQUALS"], {}, /-e: expected KEY=VALUE, got 'NOEQUALS'/],
  ["--umask 022 (Python refuses a leading 0 too)", ["--umask", "022"], {}, /--umask: expected a file mode mask like 0o22/],
  ["--umask 0o1000", ["--umask", "0o1000"], {}, /--umask: expected a file mode mask/],
  ["--certfile without --keyfile", ["--certfile", "c.pem"], {}, /^--certfile needs --keyfile/],
  ["--keyfile without --certfile", ["--keyfile", "k.pem"], {}, /^--keyfile needs --certfile/],
  ["--cert-reqs without TLS", ["--cert-reqs", "2"], {}, /need --certfile and --keyfile/],
  ["--cert-reqs 2 without --ca-certs", ["--certfile", "c", "--keyfile", "k", "--cert-reqs", "2"], {}, /needs --ca-certs/],
  ["--cert-reqs 3", ["--certfile", "c", "--keyfile", "k", "--cert-reqs", "3"], {}, /--cert-reqs: must be at most 2/],
  ["--ssl-version 3 (TLS 1.2+ always)", ["--ssl-version", "3"], {}, /TLS 1.2 or 1.3/],
  ["--forwarded-allow-ips with a name", ["--forwarded-allow-ips", "localhost"], {}, /'localhost' is not an IP address or network/],
  ["--forwarded-allow-ips with a bad prefix", ["--forwarded-allow-ips", "10.0.0.0/40"], {}, /prefix length must be 0 to 32/],
  ["FORWARDED_ALLOW_IPS with a bad entry", [], { FORWARDED_ALLOW_IPS: "10.0.0.1,nope" }, /^FORWARDED_ALLOW_IPS: 'nope' is not an IP/],
  ["--proxy-allow-from with a bad entry", ["--proxy-allow-from", "1.2.3"], {}, /'1.2.3' is not an IP/],
  ["--proxy-protocol with a value that is no mode (never the APP)", ["--proxy-protocol", "app:application"], {}, /--proxy-protocol: expected off, v1, v2 or auto, got 'app:application'/],
  ["--proxy-protocol=yes", ["--proxy-protocol=yes"], {}, /expected off, v1, v2 or auto/],
  ["--reload-engine fsevents", ["--reload-engine", "fsevents"], {}, /^--reload-engine: expected auto, poll or inotify, got 'fsevents'$/],
  ["--log-syslog", ["--log-syslog"], {}, /does not write to syslog/],
  ["--log-config", ["--log-config", "log.ini"], {}, /logging configuration/],
  ["--logger-class", ["--logger-class", "my.Logger"], {}, /cannot be replaced/],
  ["--paste", ["--paste", "app.ini"], {}, /PasteDeploy/],
  ["--http-protocols h2", ["--http-protocols", "h2"], {}, /HTTP\/1\.1 only/],
  ["--dirty-workers 2", ["--dirty-workers", "2"], {}, /no dirty arbiters/],
  ["--strip-header-spaces", ["--strip-header-spaces"], {}, /strict/],
  ["--header-map dangerous", ["--header-map", "dangerous"], {}, /drops header names with '_'/],
  ["--protocol uwsgi", ["--protocol", "uwsgi"], {}, /HTTP only/],
  ["WEB_CONCURRENCY=abc", [], { WEB_CONCURRENCY: "abc" }, /^WEB_CONCURRENCY: expected a whole number/],
  ["PORT=http", [], { PORT: "http" }, /--bind/],
  ["GUNICORN_CMD_ARGS with an open quote", [], { GUNICORN_CMD_ARGS: "-w '3" }, /GUNICORN_CMD_ARGS: no closing quotation/],
  ["GUNICORN_CMD_ARGS with a bad value", [], { GUNICORN_CMD_ARGS: "-k eventlet" }, /^GUNICORN_CMD_ARGS: -k: bunicorn has no eventlet worker/],
  ["--access-logformat with %(s)d", ["--access-logformat", "%(s)d"], {}, /^--access-logformat: expected %\(atom\)s or %% at offset 0, got '%\(s\)d'$/],
  ["--access-logformat with a stray %", ["--access-logformat", "%(h)s 100%"], {}, /^--access-logformat: expected %\(atom\)s or %% at offset 9, got '%'$/],
  ["--access-logformat with an unclosed %(", ["--access-logformat", "%(h"], {}, /^--access-logformat: expected %\(atom\)s/],
  ["--access-logformat json: with an empty atom", ["--access-logformat", "json:h,,s"], {}, /^--access-logformat: json: expects atoms separated by commas/],
  ["--statsd-host unix:PATH", ["--statsd-host", "unix:/tmp/statsd.sock"], {}, /^--statsd-host: unix datagram sockets are not supported/],
  ["--statsd-host with a bad port", ["--statsd-host", "localhost:99999"], {}, /^--statsd-host: expected HOST:PORT, got 'localhost:99999'$/],
  ["--statsd-host with a scheme", ["--statsd-host", "udp://localhost:8125"], {}, /^--statsd-host: expected HOST:PORT/],
];

// [name, argv, the warning expected]
const WARNED: [string, string[], RegExp][] = [
  ["--reuse-port", ["--reuse-port"], /^--reuse-port ignored: /],
  ["--worker-tmp-dir", ["--worker-tmp-dir", "/dev/shm"], /^--worker-tmp-dir ignored: .*heartbeat/],
  ["--worker-connections 500", ["--worker-connections", "500"], /--max-connections/],
  ["-n NAME", ["-n", "shop"], /^-n ignored: /],
];

function parse(argv: string[], env: Record<string, string> = {}) {
  return parseArgs(["app:app", ...argv], { env });
}

describe("the command line and the environment, as gunicorn reads them", () => {
  for (const [name, argv, env, expected] of ACCEPTED) {
    test(name, () => {
      const config = parse(argv, env);
      expect(config).toMatchObject(expected);
      expect(config.warnings).toEqual([]);
    });
  }
  for (const [name, argv, env, message] of REFUSED) {
    test(`refused: ${name}`, () => {
      let error: unknown = null;
      try { parse(argv, env); } catch (err) { error = err; }
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toMatch(message);
    });
  }
  for (const [name, argv, warning] of WARNED) {
    test(`warned: ${name}`, () => {
      const config = parse(argv);
      expect(config.warnings.length).toBe(1);
      expect(config.warnings[0]).toMatch(warning);
    });
  }
  test("gunicorn's defaults given explicitly for a refused setting are accepted without a word", () => {
    const config = parse(["--forwarded-allow-ips", "127.0.0.1,::1", "--http-protocols", "h1", "--protocol", "http", "--header-map", "drop"]);
    expect(config.warnings).toEqual([]);
  });
});

// [shell text, the words shlex.split gives]
const SHELL_WORDS: [string, string[]][] = [
  ["-w 3", ["-w", "3"]],
  ["  -w\t3  ", ["-w", "3"]],
  ["--env 'A=b c'", ["--env", "A=b c"]],
  ['--env "A=\\"q\\""', ["--env", 'A="q"']],
  ["--env A=b\\ c", ["--env", "A=b c"]],
  ["''", [""]],
  ["a'b'c", ["abc"]],
  ["", []],
];
describe("GUNICORN_CMD_ARGS is split as shlex.split does", () => {
  for (const [text, words] of SHELL_WORDS) {
    test(JSON.stringify(text), () => expect(splitShellWords(text)).toEqual(words));
  }
  test("and the same words as Python's shlex", async () => {
    const texts = SHELL_WORDS.map(([t]) => t);
    const proc = Bun.spawn([PYTHON, "-c", "import json,shlex,sys; print(json.dumps([shlex.split(t) for t in json.loads(sys.argv[1])]))", JSON.stringify(texts)], { stdout: "pipe" });
    const fromPython = JSON.parse(await new Response(proc.stdout).text());
    expect(texts.map(splitShellWords)).toEqual(fromPython);
  });
});

/** `bunicorn` or `gunicorn` with the same arguments in `cwd` (VIRTUAL_ENV picks the interpreter, as a user's venv would). */
function runBoth(args: string[], env: Record<string, string> = {}, cwd = dir) {
  const common = { cwd, env: { VIRTUAL_ENV: VENV, PYTHONDONTWRITEBYTECODE: "1", ...env } };
  return Promise.all([runCli(args, common), runCli(args, { ...common, cmd: [GUNICORN] })]);
}

/** The `name = value` lines of --print-config for these settings. */
function printedSettings(stdout: string, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of stdout.matchAll(/^(\w+)\s+= (.*)$/gm)) if (names.includes(m[1])) out[m[1]] = m[2];
  return out;
}

describe("the config file (real processes, side by side with gunicorn --print-config)", () => {
  test("precedence: defaults < config file < GUNICORN_CMD_ARGS < command line, as gunicorn orders them", async () => {
    const file = join(dir, "precedence.conf.py");
    writeFileSync(file, `bind = "127.0.0.1:1111"\nworkers = 2\ntimeout = 7\nkeepalive = 9\nraw_env = ["A=file"]\nmax_requests = 11\n`);
    const args = ["-c", file, "-w", "4", "app:app", "--print-config"];
    const env = { GUNICORN_CMD_ARGS: "-w 3 -t 8 --max-requests 12", WEB_CONCURRENCY: "6" };
    const names = ["bind", "workers", "timeout", "keepalive", "raw_env", "max_requests", "graceful_timeout"];
    const [ours, theirs] = await runBoth(args, env);
    expect(ours.code).toBe(0);
    const seen = printedSettings(ours.stdout, names);
    expect(seen).toEqual({ bind: "['127.0.0.1:1111']", workers: "4", timeout: "8", keepalive: "9", raw_env: "['A=file']", max_requests: "12", graceful_timeout: "30" });
    expect(seen).toEqual(printedSettings(theirs.stdout, names));
  });

  test("./gunicorn.conf.py is read when no -c is given; WEB_CONCURRENCY and PORT are defaults the file overrides", async () => {
    const sub = join(dir, "default-file");
    Bun.spawnSync(["mkdir", "-p", sub]);
    writeFileSync(join(sub, "gunicorn.conf.py"), `import os\nworkers = int(os.environ["FROM_ENV"]) + 1\n`);
    const names = ["bind", "workers"];
    const [ours, theirs] = await runBoth(["app:app", "--print-config"], { FROM_ENV: "4", WEB_CONCURRENCY: "9", PORT: "5005" }, sub);
    expect(printedSettings(ours.stdout, names)).toEqual({ bind: "['0.0.0.0:5005']", workers: "5" });
    expect(printedSettings(ours.stdout, names)).toEqual(printedSettings(theirs.stdout, names));
  });

  test("python:MODULE is imported", async () => {
    writeFileSync(join(dir, "myconf.py"), `workers = 3\n`);
    const [ours, theirs] = await runBoth(["-c", "python:myconf", "app:app", "--print-config"]);
    expect(printedSettings(ours.stdout, ["workers"])).toEqual({ workers: "3" });
    expect(printedSettings(theirs.stdout, ["workers"])).toEqual({ workers: "3" });
  });

  test("an unknown name is a warning that names it; imports and helper functions are not", async () => {
    const file = join(dir, "unknown.conf.py");
    writeFileSync(file, `import multiprocessing\ndef helper(): return 2\nworker = 4\nworkers = helper()\n`);
    const r = await runCli(["-c", file, "app:app", "--print-config"], { cwd: dir, env: { VIRTUAL_ENV: VENV } });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("unknown setting 'worker' ignored");
    expect(r.stderr).not.toContain("multiprocessing");
    expect(r.stderr).not.toContain("helper");
    expect(printedSettings(r.stdout, ["workers"])).toEqual({ workers: "2" });
  });

  // [name, file text, the message expected]; every one exits 2 naming the file.
  const BROKEN: [string, string, RegExp][] = [
    ["a syntax error", "workers = \n", /: line 1: SyntaxError: invalid syntax$/m],
    ["an exception", "workers = 2\nraise ValueError('no config for you')\n", /: line 2: ValueError: no config for you$/m],
    ["a failed import", "import no_such_module_here\n", /: line 1: ModuleNotFoundError: No module named 'no_such_module_here'$/m],
    ["sys.exit()", "import sys\nsys.exit(3)\n", /: line 2: SystemExit: 3$/m],
    ["a value of the wrong type", "workers = 'many'\n", /: workers: expected a whole number, got 'many'$/m],
    ["a refused value", "worker_class = 'gevent'\n", /: worker_class: bunicorn has no gevent worker; use --threads$/m],
    ["a server hook that is not a function", "post_fork = 3\n", /: post_fork: a server hook must be a function/m],
    ["secure_scheme_headers not a dict", "secure_scheme_headers = 'X-Proto'\n", /: secure_scheme_headers: expected a dict/m],
    ["secure_scheme_headers with a number value", "secure_scheme_headers = {'X-Proto': 1}\n", /: secure_scheme_headers: the value for 'X-Proto' must be a string/m],
    ["a callable where a value belongs", "workers = len\n", /: workers: is a Python callable/m],
    ["an object JSON cannot carry", "import threading\nbind = threading.Lock()\n", /: bind: a \w+ value/m],
  ];
  for (const [name, text, message] of BROKEN) {
    test(`broken: ${name} → the file's name, the error, exit 2`, async () => {
      const file = join(dir, `broken-${name.replaceAll(/\W+/g, "-")}.py`);
      writeFileSync(file, text);
      const r = await runCli(["-c", file, "app:app", "-b", "127.0.0.1:0"], { cwd: dir, env: { VIRTUAL_ENV: VENV } });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(file);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain("Traceback");
      expect(r.stderr).not.toContain("Listening at");
    });
  }

  test("broken: a missing -c file", async () => {
    const r = await runCli(["-c", join(dir, "nope.py"), "app:app"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/config file \S+nope\.py: no such file/);
  });

  test("broken: no Python to read an explicit -c file", async () => {
    writeFileSync(join(dir, "fine.conf.py"), "workers = 2\n");
    const r = await runCli(["-c", join(dir, "fine.conf.py"), "--python", "/no/python", join(ROOT, "apps", "hello.ts")], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no Python interpreter to read it: \/no\/python not found/);
  });
});

const ENV_APP = `import json, os
def app(environ, start_response):
    if environ["PATH_INFO"] == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such page"]
    seen = {k: environ.get(k) for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "SERVER_PROTOCOL", "HTTP_X_TEST", "CONTENT_LENGTH")}
    seen["FROM_RAW_ENV"] = os.environ.get("FROM_RAW_ENV")
    seen["ALSO"] = os.environ.get("ALSO")
    seen["multiprocess"] = environ["wsgi.multiprocess"]
    seen["multithread"] = environ["wsgi.multithread"]
    body = json.dumps(seen, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("X-App", "env")])
    return [body]
`;

/** A typical deployment's gunicorn.conf.py; the port comes from the environment so both servers can run at once. */
const TYPICAL_CONF = `import os
bind = "127.0.0.1:" + os.environ["TEST_PORT"]
workers = 2
raw_env = ["FROM_RAW_ENV=from the config file", "ALSO=x=y"]
accesslog = os.environ["TEST_ACCESS_LOG"]
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
timeout = 30
`;

/** Start `bunicorn envapp:app` or `gunicorn envapp:app` in `cwd`, the same command but for the name; wait until it listens. */
async function startDeployment(server: "bunicorn" | "gunicorn", cwd: string, port: number, accessLog: string) {
  const cmd = server === "bunicorn" ? [process.execPath, join(ROOT, "server.ts")] : [GUNICORN];
  const proc = Bun.spawn([...cmd, "envapp:app"], {
    cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe",
    env: { ...process.env, VIRTUAL_ENV: VENV, PYTHONDONTWRITEBYTECODE: "1", TEST_PORT: String(port), TEST_ACCESS_LOG: accessLog },
  });
  const stderr = new Response(proc.stderr).text();
  // gunicorn binds once its config is read, bunicorn too (and holds requests until a worker is up).
  let isUp = false;
  for (let i = 0; i < 200 && proc.exitCode === null && !isUp; i++) {
    isUp = await isListening(port);
    if (!isUp) await Bun.sleep(50);
  }
  return { proc, isUp, stderr };
}

async function stopDeployment(d: { proc: ReturnType<typeof Bun.spawn> }): Promise<void> {
  d.proc.kill("SIGTERM");
  const timer = setTimeout(() => d.proc.kill("SIGKILL"), 10_000);
  await d.proc.exited;
  clearTimeout(timer);
}

/** An access log line with its timestamp masked: `[10/Oct/2000:13:55:36 +0000]`. */
const maskTime = (line: string) => line.replace(/\[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]/, "[TIME]");

describe("a typical gunicorn.conf.py: the same behaviour under bunicorn as under gunicorn", () => {
  test("the env the app sees, status, body, headers and the access log", async () => {
    const results: Record<string, { responses: { status: number; body: string; contentType?: string; xApp?: string }[]; log: string[] }> = {};
    for (const server of ["gunicorn", "bunicorn"] as const) {
      const cwd = join(dir, `deploy-${server}`);
      Bun.spawnSync(["mkdir", "-p", cwd]);
      writeFileSync(join(cwd, "envapp.py"), ENV_APP);
      writeFileSync(join(cwd, "gunicorn.conf.py"), TYPICAL_CONF);
      const accessLog = join(cwd, "access.log");
      const port = freePort();
      const d = await startDeployment(server, cwd, port, accessLog);
      try {
        expect({ server, isUp: d.isUp }).toEqual({ server, isUp: true });
        const responses = [];
        for (const [target, headers] of [["/hello?x=1", { "X-Test": "yes", "User-Agent": "side-by-side", Referer: "http://ref/" }], ["/missing", { "User-Agent": "side-by-side" }]] as const) {
          const res = await request(port, target, { headers });
          responses.push({ status: res.status, body: res.body.toString("utf8"), contentType: res.headers.find(([k]) => k.toLowerCase() === "content-type")?.[1], xApp: res.headers.find(([k]) => k.toLowerCase() === "x-app")?.[1] });
        }
        await stopDeployment(d);
        await waitFor(() => existsSync(accessLog) && readFileSync(accessLog, "utf8").split("\n").length > 2, 3000);
        results[server] = { responses, log: readFileSync(accessLog, "utf8").split("\n").filter((l) => l !== "").map(maskTime) };
      } finally {
        if (isAlive(d.proc.pid)) await stopDeployment(d);
      }
    }
    expect(results.bunicorn.responses).toEqual(results.gunicorn.responses);
    expect(JSON.parse(results.bunicorn.responses[0].body)).toMatchObject({ FROM_RAW_ENV: "from the config file", ALSO: "x=y", HTTP_X_TEST: "yes", multiprocess: true });
    expect(results.bunicorn.log).toEqual(results.gunicorn.log);
    expect(results.bunicorn.log.length).toBe(2);
  }, 60_000);
});

describe("PORT and the settings users rely on, in a running server", () => {
  test("PORT: listens on 0.0.0.0:$PORT, reachable from outside loopback's name", async () => {
    const port = freePort();
    const pidfile = join(dir, "server.pid");
    const proc = Bun.spawn([process.execPath, join(ROOT, "server.ts"), join(ROOT, "apps", "hello.ts"), "--pid", pidfile], {
      cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, PORT: String(port) },
    });
    let stderr = "";
    void (async () => { for await (const c of proc.stderr) stderr += new TextDecoder().decode(c); })();
    try {
      expect(await waitFor(() => stderr.includes(`Listening at: http://0.0.0.0:${port}`), 10_000)).toBe(true);
      expect(readFileSync(pidfile, "utf8")).toBe(`${proc.pid}\n`);
      const res = await request(port, "/");
      expect(res.status).toBe(200);
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
    expect(existsSync(pidfile)).toBe(false); // removed at exit
  });
});

describe("--pid", () => {
  /** A hello.ts server with --pid; resolves once the file names it. */
  async function serveWithPidfile(pidfile: string) {
    const port = freePort();
    const proc = Bun.spawn([process.execPath, join(ROOT, "server.ts"), join(ROOT, "apps", "hello.ts"), "--pid", pidfile, "-b", `127.0.0.1:${port}`], {
      cwd: dir, stdin: "ignore", stdout: "ignore", stderr: "ignore",
    });
    expect(await waitFor(() => existsSync(pidfile) && readFileSync(pidfile, "utf8") === `${proc.pid}\n`, 10_000)).toBe(true);
    return proc;
  }

  test("while a server runs, another with its pid file exits 2 naming that pid, and --check-config leaves the file alone", async () => {
    const pidfile = join(dir, "running.pid");
    const first = await serveWithPidfile(pidfile);
    try {
      const second = await runCli(["--pid", pidfile, "-b", `127.0.0.1:${freePort()}`, join(ROOT, "apps", "hello.ts")], { cwd: dir });
      expect(second.code).toBe(2);
      expect(second.stderr).toContain(`bunicorn: error: --pid ${pidfile}: already running on PID ${first.pid}`);
      const check = await runCli(["--pid", pidfile, "--check-config", join(ROOT, "apps", "hello.ts")], { cwd: dir });
      expect(check.code).toBe(0);
      expect(readFileSync(pidfile, "utf8")).toBe(`${first.pid}\n`); // neither took it nor removed it
    } finally {
      first.kill("SIGTERM");
      await first.exited;
    }
    expect(existsSync(pidfile)).toBe(false);
  });

  test("a stale pid file (its process is gone) is taken over", async () => {
    const pidfile = join(dir, "stale.pid");
    const gone = Bun.spawn(["true"]);
    await gone.exited;
    writeFileSync(pidfile, `${gone.pid}\n`);
    const server = await serveWithPidfile(pidfile);
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    expect(existsSync(pidfile)).toBe(false);
  });
});

describe("--daemon, --umask, --check-config", () => {
  test("-D: the command exits 0, a detached server writes its pid file and serves; SIGTERM to that pid stops it", async () => {
    const port = freePort();
    const pidfile = join(dir, "daemon.pid");
    const r = await runCli(["-D", "--pid", pidfile, "-b", `127.0.0.1:${port}`, join(ROOT, "apps", "hello.ts")], { cwd: dir });
    expect(r.code).toBe(0);
    expect(await waitFor(() => existsSync(pidfile) && /^\d+\n$/.test(readFileSync(pidfile, "utf8")), 10_000)).toBe(true);
    let pid = 0;
    try {
      expect(await waitFor(() => { pid = Number(readFileSync(pidfile, "utf8")); return isAlive(pid); }, 5000)).toBe(true);
      for (let i = 0; i < 100 && !(await isListening(port)); i++) await Bun.sleep(50);
      expect((await request(port, "/")).status).toBe(200);
    } finally {
      if (pid > 0 && isAlive(pid)) process.kill(pid, "SIGTERM");
    }
    expect(await waitFor(() => !isAlive(pid), 10_000)).toBe(true);
    expect(existsSync(pidfile)).toBe(false);
  });

  test("--umask applies to the files the server creates (the access log here)", async () => {
    const pidfile = join(dir, "umask.pid");
    const r = await runCli(["--umask", "0o077", "--pid", pidfile, "--check-config", join(ROOT, "apps", "hello.ts")], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("Configuration OK");
    // --check-config exits after the checks, and the pid file is the server's alone: never written.
    expect(existsSync(pidfile)).toBe(false);
    const r2 = await runCli(["--umask", "0o077", "--access-logfile", join(dir, "umask.log"), "--check-config", join(ROOT, "apps", "hello.ts")], { cwd: dir });
    expect(r2.code).toBe(0);
    expect(Bun.spawnSync(["stat", "-c", "%a", join(dir, "umask.log")]).stdout.toString().trim()).toBe("600");
  });

  test("--check-config with a bad setting exits 2 without serving", async () => {
    const r = await runCli(["--check-config", "-k", "gevent", join(ROOT, "apps", "hello.ts")], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("use --threads");
  });
});
