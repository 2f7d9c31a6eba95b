// The scenarios of bench/run.ts: what each server serves, with how many
// processes × threads, and what is measured against it.
import type { AnswerCheck, Probe, WrkLoad } from "./common.ts";
import type { PythonApp, ServerName, Sizing } from "./servers.ts";
import { PYTHON_SERVERS } from "./servers.ts";

export const SCENARIO_NAMES = ["hello", "10k", "echo", "flask", "slow-io", "stream", "idle", "ts", "static", "tls"] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/** wrk in alternating rounds; req/s. */
export interface WrkMeasurement {
  kind: "wrk";
  name: string;
  title: string;
  load: WrkLoad;
  /** For a POST: the body wrk sends (its Lua script is made from it). */
  postBytes?: number;
  probe: Probe;
}

/** bench/stream_client.ts in alternating rounds; MB/s. */
export interface StreamMeasurement {
  kind: "stream";
  name: string;
  title: string;
  mode: "download" | "upload";
  path: string;
  bytes: number;
}

/** wrk alone, then again while bench/idle_conns.ts holds idle keep-alive connections. */
export interface IdleMeasurement {
  kind: "idle";
  name: string;
  title: string;
  load: WrkLoad;
  probe: Probe;
  /** Each idle connection asks for this once before it goes idle. */
  idlePath: string;
}

export type Measurement = WrkMeasurement | StreamMeasurement | IdleMeasurement;

export interface Scenario {
  name: ScenarioName;
  title: string;
  servers: readonly ServerName[];
  /** A Python WSGI app, "ts": bunicorn's apps/hello.ts and Bun.serve, or "static": files served by each server itself. */
  app: PythonApp | "ts" | "static";
  sizing: Sizing;
  /** Every server binds HTTPS only, with the run's throwaway certificate (bench/run.ts makes it once). */
  tls?: boolean;
  /** Answered once a server is up. */
  ready: Probe;
  measurements: Measurement[];
}

const HELLO = "Hello, World!";
const BODY_10K = "0123456789abcdef".repeat(640); // apps/bench_apps.py's BODY_10K
export const STREAM_BYTES = 100 * 1024 * 1024; // apps/bench_apps.py's stream_100m
const KIB = 1024;
const MIB = 1024 * 1024;

const ROUTER: PythonApp = { file: "apps/bench_apps.py", callable: "router" };
export const FLASK_APP: PythonApp = { file: "bench/flask_app.py", callable: "app" };
/** The default processes × threads (waitress: one process with as many threads in all). */
const ONE_THREAD: Sizing = { workers: 2, threads: 1, holdIdle: false };
/** slow-io: enough threads in all (32) that the 10 ms sleeps overlap. */
const MANY_THREADS: Sizing = { workers: 2, threads: 16, holdIdle: false };
const CONNECTIONS = 50;
/** Idle keep-alive connections held open in the idle scenario (a quick run holds as many: that is what it checks). */
export const IDLE_CONNECTIONS = 10_000;
const SLOW_IO_CONNECTIONS = 256;

function expectLength(length: number): AnswerCheck {
  return (status, body) => status === 200 && body.length === length;
}

function expectText(text: string): AnswerCheck {
  return (status, body) => status === 200 && body === text;
}

function get(path: string, isExpected: AnswerCheck): Probe {
  return { path, isExpected };
}

/** bench/flask_app.py's answer to /items/42. */
export const isFlaskItem: AnswerCheck = (status, body) => {
  if (status !== 200) return false;
  try {
    const item = JSON.parse(body);
    return item?.id === 42 && item?.name === "item-42" && Object.keys(item).length === 2;
  } catch {
    return false;
  }
};

function echoMeasurement(name: string, bytes: number): WrkMeasurement {
  const body = "x".repeat(bytes); // what the wrk script sends too
  return {
    kind: "wrk", name, title: `POST /echo of ${name}, echoed back, ${CONNECTIONS} connections`,
    load: { connections: CONNECTIONS, path: "/echo" }, postBytes: bytes,
    probe: { path: "/echo", method: "POST", body: new TextEncoder().encode(body), isExpected: expectText(body) },
  };
}


export const SCENARIOS: Record<ScenarioName, Scenario> = {
  hello: {
    name: "hello", title: "GET of a 13-byte plain-text response", servers: PYTHON_SERVERS, app: ROUTER, sizing: ONE_THREAD,
    ready: get("/hello", expectText(HELLO)),
    measurements: [{
      kind: "wrk", name: "hello", title: `GET /hello (13 bytes), ${CONNECTIONS} keep-alive connections`,
      load: { connections: CONNECTIONS, path: "/hello" }, probe: get("/hello", expectText(HELLO)),
    }],
  },
  "10k": {
    name: "10k", title: "GET of a 10 KiB response", servers: PYTHON_SERVERS, app: ROUTER, sizing: ONE_THREAD,
    ready: get("/hello", expectText(HELLO)),
    measurements: [{
      kind: "wrk", name: "10k", title: `GET /10k (10,240 bytes), ${CONNECTIONS} connections`,
      load: { connections: CONNECTIONS, path: "/10k" }, probe: get("/10k", expectText(BODY_10K)),
    }],
  },
  echo: {
    name: "echo", title: "POST of a body, echoed back", servers: PYTHON_SERVERS, app: ROUTER, sizing: ONE_THREAD,
    ready: get("/hello", expectText(HELLO)),
    measurements: [echoMeasurement("10 KiB", 10 * KIB), echoMeasurement("1 MiB", MIB)],
  },
  flask: {
    name: "flask", title: "a small Flask app: JSON from a route with a path parameter", servers: PYTHON_SERVERS, app: FLASK_APP, sizing: ONE_THREAD,
    ready: get("/items/42", isFlaskItem),
    measurements: [{
      kind: "wrk", name: "flask", title: `GET /items/42 (bench/flask_app.py), ${CONNECTIONS} connections`,
      load: { connections: CONNECTIONS, path: "/items/42" }, probe: get("/items/42", isFlaskItem),
    }],
  },
  "slow-io": {
    name: "slow-io", title: "the app sleeps 10 ms per request", servers: PYTHON_SERVERS, app: ROUTER, sizing: MANY_THREADS,
    ready: get("/hello", expectText(HELLO)),
    measurements: [{
      kind: "wrk", name: "slow-io", title: `GET /sleep (10 ms sleep, 13 bytes), ${SLOW_IO_CONNECTIONS} connections`,
      load: { connections: SLOW_IO_CONNECTIONS, path: "/sleep" }, probe: get("/sleep", expectText(HELLO)),
    }],
  },
  stream: {
    name: "stream", title: "100 MiB streamed down and up, one connection (bench/stream_client.ts)", servers: PYTHON_SERVERS, app: ROUTER,
    sizing: ONE_THREAD, ready: get("/hello", expectText(HELLO)),
    measurements: [
      { kind: "stream", name: "download", title: "GET /stream: 100 MiB yielded by the app in 64 KiB chunks", mode: "download", path: "/stream", bytes: STREAM_BYTES },
      { kind: "stream", name: "upload", title: "POST /upload: 100 MiB sent in 64 KiB writes, read by the app in 64 KiB reads", mode: "upload", path: "/upload", bytes: STREAM_BYTES },
    ],
  },
  idle: {
    name: "idle", title: `hello while ${IDLE_CONNECTIONS.toLocaleString("en-US")} idle keep-alive connections are held open`, servers: PYTHON_SERVERS, app: ROUTER,
    sizing: { ...ONE_THREAD, holdIdle: true }, ready: get("/hello", expectText(HELLO)),
    measurements: [{
      kind: "idle", name: "idle", title: `GET /hello, ${CONNECTIONS} connections, alone and with ${IDLE_CONNECTIONS.toLocaleString("en-US")} idle connections`,
      load: { connections: CONNECTIONS, path: "/hello" }, probe: get("/hello", expectText(HELLO)), idlePath: "/hello",
    }],
  },
  ts: {
    name: "ts", title: "bunicorn with apps/hello.ts against a plain Bun.serve (the ceiling of the runtime)", servers: ["bunicorn", "bunserve"],
    app: "ts", sizing: { workers: 1, threads: 1, holdIdle: false }, ready: get("/", expectText(HELLO)),
    measurements: [{ kind: "wrk", name: "ts", title: `GET / ("Hello, World!"), ${CONNECTIONS} connections`, load: { connections: CONNECTIONS, path: "/" }, probe: get("/", expectText(HELLO)) }],
  },
  static: {
    name: "static", title: "files from disk, served by the server itself (one process each; nginx: one worker)", servers: ["bunicorn", "granian", "nginx"],
    app: "static", sizing: { workers: 1, threads: 1, holdIdle: false }, ready: get("/static/10k.bin", expectLength(10 * KIB)),
    measurements: [
      { kind: "wrk", name: "static 10 KiB", title: `GET /static/10k.bin (10,240 bytes), ${CONNECTIONS} connections`, load: { connections: CONNECTIONS, path: "/static/10k.bin" }, probe: get("/static/10k.bin", expectLength(10 * KIB)) },
      { kind: "wrk", name: "static 1 MiB", title: `GET /static/1m.bin (1 MiB), ${CONNECTIONS} connections`, load: { connections: CONNECTIONS, path: "/static/1m.bin" }, probe: get("/static/1m.bin", expectLength(MIB)) },
    ],
  },
  tls: {
    name: "tls", title: "hello over HTTPS with keep-alive, one throwaway RSA-2048 certificate for all (uWSGI and waitress left out: see the notes)",
    servers: ["bunicorn", "gunicorn", "granian"], app: ROUTER, sizing: ONE_THREAD, tls: true,
    ready: get("/hello", expectText(HELLO)),
    measurements: [{
      kind: "wrk", name: "tls", title: `GET https://…/hello (13 bytes), ${CONNECTIONS} keep-alive connections`,
      load: { connections: CONNECTIONS, path: "/hello" }, probe: get("/hello", expectText(HELLO)),
    }],
  },
};
