// An in-memory JSON tasks API, used by tests and examples. apps/tasks.py is
// the same API in Python and answers byte for byte the same.
//
//   GET    /tasks        list, 200              POST  /tasks       create, 201 + Location
//   GET    /tasks/{id}   one task, 200          PUT   /tasks/{id}  replace (title required), 200
//   PATCH  /tasks/{id}   partial update, 200    DELETE /tasks/{id} 204, no body
//
// A task is {"id": int, "title": non-empty string, "done": bool}. Ids start at
// 1 and only increase. HEAD is answered like GET (the server drops the body).
// An id is canonical decimal ([1-9][0-9]*, at most 15 digits); anything else
// under /tasks/ is 404, like a route with an int converter. Errors are JSON
// {"error": "..."}; bodies use compact JSON so both languages agree.
import type { Environ, StartResponse, WsgiApp } from "../server.ts";

interface Task {
  id: number;
  title: string;
  done: boolean;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const COLLECTION_ALLOW = "GET, POST";
const ITEM_ALLOW = "GET, PUT, PATCH, DELETE";
const ID_PATTERN = /^[1-9][0-9]{0,14}$/;

const encoder = new TextEncoder();
// fatal: invalid UTF-8 is invalid JSON. ignoreBOM: keep a BOM so JSON.parse
// rejects it, as Python's json.loads does.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

let tasks = new Map<number, Task>();
let nextId = 1;

/** Forgets every task and restarts ids at 1 (for tests). */
export function reset(): void {
  tasks = new Map();
  nextId = 1;
}

// ---- responses ----

class BadRequest extends Error {}

function sendJson(startResponse: StartResponse, status: string, value: unknown, extra: [string, string][] = []) {
  const body = encoder.encode(JSON.stringify(value));
  startResponse(status, [
    ["Content-Type", "application/json"],
    ["Content-Length", String(body.length)],
    ...extra,
  ]);
  return [body];
}

function sendError(startResponse: StartResponse, status: string, message: string, extra: [string, string][] = []) {
  return sendJson(startResponse, status, { error: message }, extra);
}

// ---- request bodies ----

/** Reads the request body: CONTENT_LENGTH bytes, or all of it when the input is terminated (chunked). */
function readBody(environ: Environ): Uint8Array {
  const input = environ["wsgi.input"];
  const length = environ.CONTENT_LENGTH ?? "";
  if (/^[0-9]+$/.test(length)) return Number(length) > 0 ? input.read(Number(length)) : new Uint8Array(0);
  return environ["wsgi.input_terminated"] ? input.read() : new Uint8Array(0);
}

/** Parses the body as a JSON object, or throws BadRequest. */
function readJsonObject(environ: Environ): Record<string, Json> {
  let value: Json;
  try {
    value = JSON.parse(decoder.decode(readBody(environ)));
  } catch {
    throw new BadRequest("invalid JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new BadRequest("body must be a JSON object");
  }
  return value;
}

/** Checks the fields of a create/replace (isPartial false) or update (isPartial true) body. */
function validateFields(body: Record<string, Json>, isPartial: boolean): { title?: string; done?: boolean } {
  const fields: { title?: string; done?: boolean } = {};
  const hasTitle = Object.hasOwn(body, "title");
  if (hasTitle || !isPartial) {
    const title = body.title;
    if (title === undefined || title === "") throw new BadRequest("title is required");
    if (typeof title !== "string") throw new BadRequest("title must be a string");
    fields.title = title;
  }
  if (Object.hasOwn(body, "done")) {
    if (typeof body.done !== "boolean") throw new BadRequest("done must be a boolean");
    fields.done = body.done;
  }
  return fields;
}

// ---- handlers ----

function handleCollection(method: string, environ: Environ, startResponse: StartResponse) {
  switch (method) {
    case "GET":
    case "HEAD":
      return sendJson(startResponse, "200 OK", [...tasks.values()]);
    case "POST": {
      const fields = validateFields(readJsonObject(environ), false);
      const task: Task = { id: nextId++, title: fields.title!, done: fields.done ?? false };
      tasks.set(task.id, task);
      return sendJson(startResponse, "201 Created", task, [["Location", `/tasks/${task.id}`]]);
    }
    default:
      return sendError(startResponse, "405 Method Not Allowed", "method not allowed", [["Allow", COLLECTION_ALLOW]]);
  }
}

function handleItem(method: string, id: number, environ: Environ, startResponse: StartResponse) {
  if (!["GET", "HEAD", "PUT", "PATCH", "DELETE"].includes(method)) {
    return sendError(startResponse, "405 Method Not Allowed", "method not allowed", [["Allow", ITEM_ALLOW]]);
  }
  const task = tasks.get(id);
  if (task === undefined) return sendError(startResponse, "404 Not Found", "not found");
  switch (method) {
    case "PUT": {
      const fields = validateFields(readJsonObject(environ), false);
      const replaced: Task = { id, title: fields.title!, done: fields.done ?? false };
      tasks.set(id, replaced);
      return sendJson(startResponse, "200 OK", replaced);
    }
    case "PATCH": {
      const fields = validateFields(readJsonObject(environ), true);
      const updated: Task = { id, title: fields.title ?? task.title, done: fields.done ?? task.done };
      tasks.set(id, updated);
      return sendJson(startResponse, "200 OK", updated);
    }
    case "DELETE":
      tasks.delete(id);
      startResponse("204 No Content", []); // RFC 9110 §8.6: no Content-Length on 204
      return [];
    default:
      return sendJson(startResponse, "200 OK", task);
  }
}

export const app: WsgiApp = (environ, startResponse) => {
  const method: string = environ.REQUEST_METHOD;
  const path: string = environ.PATH_INFO ?? "";
  try {
    if (path === "/tasks") return handleCollection(method, environ, startResponse);
    if (path.startsWith("/tasks/") && ID_PATTERN.test(path.slice(7))) {
      return handleItem(method, Number(path.slice(7)), environ, startResponse);
    }
    return sendError(startResponse, "404 Not Found", "not found");
  } catch (err) {
    if (err instanceof BadRequest) return sendError(startResponse, "400 Bad Request", err.message);
    throw err;
  }
};

export default app;
