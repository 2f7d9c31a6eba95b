// How each server of the benchmarks is started: the command line that gives it
// the same processes × threads as the others, its production-like mode, and its
// access log off; and the words that say what it runs.
import fs from "node:fs";
import os from "node:os";
import { basename, dirname, join } from "node:path";
import { BenchError, HOST, ROOT, runCommand } from "./common.ts";
import { VENV_BIN, VENV_PYTHON } from "./venv.ts";

export const PYTHON_SERVERS = ["bunicorn", "gunicorn", "granian", "uwsgi", "waitress"] as const;
export const SERVER_NAMES = [...PYTHON_SERVERS, "bunserve", "nginx"] as const;
export type ServerName = (typeof SERVER_NAMES)[number];
export type PythonServerName = (typeof PYTHON_SERVERS)[number];

export const SERVER_LABELS: Record<ServerName, string> = {
  bunicorn: "bunicorn", gunicorn: "gunicorn", granian: "granian", uwsgi: "uWSGI", waitress: "waitress", bunserve: "Bun.serve", nginx: "nginx",
};

/** A WSGI callable in a file; the file is relative to the repository root. */
export interface PythonApp {
  file: string;
  callable: string;
}

export interface Sizing {
  workers: number; // processes (waitress, one process, gets workers × threads threads)
  threads: number; // app threads in each
  /** Idle keep-alive connections will be held: raise every idle timeout the server has. */
  holdIdle: boolean;
}

export interface Launch {
  cmd: string[];
  cwd?: string;
  /** Its processes × threads, in words. */
  shape: string;
}

/** A certificate and its unencrypted key (PEM files) that every bind of a server is to use: HTTPS only. */
export interface TlsFiles {
  certfile: string;
  keyfile: string;
}

/** A run's throwaway certificate: the files, and its PEM for the probes to trust. */
export type TlsCert = TlsFiles & { pem: string };

/** Idle seconds a kept-alive connection may wait, when idle connections are held. */
export const IDLE_KEEP_ALIVE_S = 300;
/**
 * Every connection cap a server has is set to this, so that none turns connections
 * away or leaves them unserved in the listen queue (waitress's default is 100,
 * fewer than the slow-io scenario's 256). bunicorn's --max-connections is 20000 already.
 */
export const CONNECTION_CAP = 20_000;
/** granian's longest header read timeout (ms); it also ends idle kept-alive connections. */
const GRANIAN_MAX_HEADER_READ_TIMEOUT_MS = 60_000;
/**
 * Listen queue of uWSGI's sockets (its default, 100, is below the 256 connections of
 * slow-io: its HTTP router opens one connection to the workers' socket per request).
 */
const UWSGI_LISTEN = 1024;
/**
 * The router's buffer: with its default (a page, 4 KiB) it writes a 10 KiB answer in
 * pieces, and Nagle's algorithm with delayed ACKs stalls each for 40 ms (1,100 req/s
 * instead of 7,500). Not 64 KiB: with that, 1 in 4 POSTs of 1 MiB is reset.
 */
const UWSGI_HTTP_BUFFER = 32 * 1024;

function threadWords(n: number, kind = "thread"): string {
  return `${n} ${kind}${n === 1 ? "" : "s"}`;
}

function bunicorn(app: PythonApp, s: Sizing, port: number, tls: TlsFiles | null = null): Launch {
  return {
    cmd: [process.execPath, join(ROOT, "server.ts"), `${app.file}:${app.callable}`, "-w", String(s.workers), "--threads", String(s.threads),
      "--python", VENV_PYTHON, "-b", `${HOST}:${port}`, ...(s.holdIdle ? ["--keep-alive", String(IDLE_KEEP_ALIVE_S)] : []),
      ...(tls ? ["--certfile", tls.certfile, "--keyfile", tls.keyfile] : [])],
    shape: `1 Bun front + ${s.workers} Python workers × ${threadWords(s.threads)}`,
  };
}

function gunicorn(app: PythonApp, s: Sizing, port: number, tls: TlsFiles | null = null): Launch {
  return {
    cmd: [join(VENV_BIN, "gunicorn"), "-k", "gthread", "-w", String(s.workers), "--threads", String(s.threads), "-b", `${HOST}:${port}`,
      "--worker-connections", String(CONNECTION_CAP), ...(s.holdIdle ? ["--keep-alive", String(IDLE_KEEP_ALIVE_S)] : []),
      ...(tls ? ["--certfile", tls.certfile, "--keyfile", tls.keyfile] : []),
      "--chdir", join(ROOT, dirname(app.file)), `${moduleName(app)}:${app.callable}`],
    shape: `1 master + ${s.workers} gthread workers × ${threadWords(s.threads)}`,
  };
}

function granian(app: PythonApp, s: Sizing, port: number, tls: TlsFiles | null = null): Launch {
  return {
    // --http 1: HTTP/1.1 only, as every other server here (auto would sniff for HTTP/2 first).
    // --backpressure (per worker) caps its open connections, backlog/workers = 512 by default.
    cmd: [join(VENV_BIN, "granian"), "--interface", "wsgi", "--http", "1", "--workers", String(s.workers), "--blocking-threads", String(s.threads),
      "--backpressure", String(Math.ceil(CONNECTION_CAP / s.workers)), "--no-access-log", "--host", HOST, "--port", String(port),
      ...(s.holdIdle ? ["--http1-header-read-timeout", String(GRANIAN_MAX_HEADER_READ_TIMEOUT_MS)] : []),
      ...(tls ? ["--ssl-certificate", tls.certfile, "--ssl-keyfile", tls.keyfile] : []),
      "--working-dir", join(ROOT, dirname(app.file)), `${moduleName(app)}:${app.callable}`],
    shape: `1 main + ${s.workers} workers × ${threadWords(s.threads, "blocking thread")}`,
  };
}

function uwsgi(app: PythonApp, s: Sizing, port: number, tls: TlsFiles | null = null): Launch {
  if (tls) throw new BenchError(`uWSGI is not run over HTTPS here: ${NO_TLS.uwsgi}`);
  return {
    // Its own HTTP router (--http) holds the client connections and keeps them alive:
    // with --http11-socket each kept-alive connection pins a worker until --socket-timeout
    // (4 s), so 2 workers would serve 2 of wrk's 50 connections and starve the rest.
    // --die-on-term: SIGTERM stops uWSGI 2.0 instead of reloading it.
    cmd: [join(VENV_BIN, "uwsgi"), "--master", "--die-on-term", "--need-app", "--disable-logging",
      "--http", `${HOST}:${port}`, "--http-keepalive", "--http-buffer-size", String(UWSGI_HTTP_BUFFER), ...(s.holdIdle ? ["--http-timeout", String(IDLE_KEEP_ALIVE_S)] : []),
      "--processes", String(s.workers), ...(s.threads > 1 ? ["--threads", String(s.threads)] : []), "--listen", String(UWSGI_LISTEN),
      "--wsgi-file", join(ROOT, app.file), "--callable", app.callable],
    shape: `1 master + 1 HTTP router + ${s.workers} workers × ${threadWords(s.threads)}`,
  };
}

function waitress(app: PythonApp, s: Sizing, port: number, tls: TlsFiles | null = null): Launch {
  if (tls) throw new BenchError(`waitress is not run over HTTPS here: ${NO_TLS.waitress}`);
  const threads = s.workers * s.threads;
  return {
    // waitress-serve imports the app from its working directory. --asyncore-use-poll:
    // select() cannot watch file descriptors above 1023.
    cmd: [join(VENV_BIN, "waitress-serve"), "--listen", `${HOST}:${port}`, "--threads", String(threads),
      "--connection-limit", String(CONNECTION_CAP), "--asyncore-use-poll", ...(s.holdIdle ? ["--channel-timeout", String(IDLE_KEEP_ALIVE_S)] : []),
      `${moduleName(app)}:${app.callable}`],
    cwd: join(ROOT, dirname(app.file)),
    shape: `1 process × ${threadWords(threads)}`,
  };
}

function moduleName(app: PythonApp): string {
  return basename(app.file).replace(/\.py$/, "");
}

/** tls: every bind HTTPS with these files (null: plain HTTP). */
export const PYTHON_LAUNCHERS: Record<PythonServerName, (app: PythonApp, s: Sizing, port: number, tls?: TlsFiles | null) => Launch> = {
  bunicorn, gunicorn, granian, uwsgi, waitress,
};

// ---- the tls scenario: hello over HTTPS, one throwaway certificate for every server ----

/** Why these servers are left out of the tls scenario (stated in the results). */
export const NO_TLS = {
  uwsgi: "not wired up for this scenario: the bench/.venv build has OpenSSL and its HTTP router takes `--https ADDR,CERT,KEY` in place of `--http`, but that setup (and its keep-alive over HTTPS) has not been checked here",
  waitress: "it has no TLS at all (its docs send HTTPS to a proxy in front)",
} as const;

const TLS_CERT_TIMEOUT_MS = 30_000;

/**
 * A self-signed RSA-2048 certificate for 127.0.0.1 (CN and subjectAltName, valid 1 day)
 * and its key, made by openssl in dir; returns the files and the certificate's PEM.
 */
export async function makeThrowawayCert(dir: string): Promise<TlsCert> {
  const certfile = join(dir, "cert.pem");
  const keyfile = join(dir, "key.pem");
  const openssl = Bun.which("openssl");
  if (openssl === null) throw new BenchError("openssl is not installed (the tls scenario makes its certificate with it): apt-get install openssl");
  const made = await runCommand([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", keyfile, "-out", certfile], TLS_CERT_TIMEOUT_MS);
  if (made.code !== 0 || !fs.existsSync(certfile) || !fs.existsSync(keyfile)) {
    throw new BenchError(`openssl req -x509 failed (exit ${made.code}): ${made.stderr.trim().split("\n").at(-1)}`);
  }
  return { certfile, keyfile, pem: fs.readFileSync(certfile, "utf8") };
}

/** bunicorn serving a TypeScript app: one Bun process, no Python workers. */
export function bunicornTs(app: string, port: number, server = join(ROOT, "server.ts"), extraArgs: string[] = []): Launch {
  const prefix = /\.[cm]?[jt]s$/.test(server) ? [process.execPath, server] : [server];
  return { cmd: [...prefix, app, "-b", `${HOST}:${port}`, ...extraArgs], shape: "1 Bun process (TypeScript app)" };
}

// ---- the static scenario: files served by the server itself, one process each ----

/** The directory served under /static/ (made by ensureStaticFiles, ignored by git). */
export const STATIC_DIR = join(ROOT, "bench", ".static");
export const STATIC_FILES = { "10k.bin": 10 * 1024, "1m.bin": 1024 * 1024 } as const;

/** The files of the static scenario, written once: ASCII (the readiness probe reads the body as text); no server here compresses on the fly. */
export function ensureStaticFiles(): void {
  fs.mkdirSync(STATIC_DIR, { recursive: true });
  for (const [name, bytes] of Object.entries(STATIC_FILES)) {
    const file = join(STATIC_DIR, name);
    if (fs.existsSync(file) && fs.statSync(file).size === bytes) continue;
    fs.writeFileSync(file, "0123456789abcdef".repeat(bytes / 16));
  }
}

/** bunicorn's front answering /static/ itself (the TypeScript hello app behind it never sees those paths). */
export function bunicornStatic(port: number): Launch {
  return { ...bunicornTs("apps/hello.ts", port, join(ROOT, "server.ts"), ["--static-map", `/static=${STATIC_DIR}`]), shape: "1 Bun process (--static-map)" };
}

/** granian's static files (Rust, in its worker), in front of the bench router; one worker like the others. */
export function granianStatic(port: number): Launch {
  const app: PythonApp = { file: "apps/bench_apps.py", callable: "router" };
  return {
    cmd: [join(VENV_BIN, "granian"), "--interface", "wsgi", "--http", "1", "--workers", "1", "--no-access-log", "--host", HOST, "--port", String(port),
      "--static-path-route", "/static", "--static-path-mount", STATIC_DIR, "--working-dir", join(ROOT, dirname(app.file)), `${moduleName(app)}:${app.callable}`],
    shape: "1 main + 1 worker (--static-path-mount)",
  };
}

/** nginx from the Debian package, one worker process, sendfile on, logs off, its own prefix in a temp directory. */
export function nginxStatic(port: number): Launch {
  const nginx = Bun.which("nginx") ?? (fs.existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : null);
  if (nginx === null) throw new Error("nginx is not installed: apt-get install nginx (.ci/run does when root)");
  const prefix = fs.mkdtempSync(join(os.tmpdir(), "bench-nginx-"));
  fs.writeFileSync(join(prefix, "nginx.conf"), `
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${prefix}; proxy_temp_path ${prefix}; fastcgi_temp_path ${prefix}; uwsgi_temp_path ${prefix}; scgi_temp_path ${prefix};
  server {
    listen ${HOST}:${port};
    location /static/ { alias ${STATIC_DIR}/; }
  }
}
`);
  return { cmd: [nginx, "-p", prefix, "-c", join(prefix, "nginx.conf"), "-g", "daemon off;"], shape: "1 master + 1 worker (sendfile on)" };
}

/** The plainest Bun.serve hello world: the ceiling of the runtime. */
export function bunServe(port: number): Launch {
  return { cmd: [process.execPath, join(ROOT, "bench", "bunserve_hello.ts"), String(port)], shape: "1 Bun process" };
}
