"""An in-memory JSON tasks API: the same API as apps/tasks.ts, byte for byte.

    GET    /tasks        list, 200              POST   /tasks       create, 201 + Location
    GET    /tasks/{id}   one task, 200          PUT    /tasks/{id}  replace (title required), 200
    PATCH  /tasks/{id}   partial update, 200    DELETE /tasks/{id}  204, no body

A task is {"id": int, "title": non-empty string, "done": bool}. Ids start at 1
and only increase. HEAD is answered like GET (the server drops the body). An id
is canonical decimal ([1-9][0-9]*, at most 15 digits); anything else under
/tasks/ is 404. Errors are JSON {"error": "..."}. Bodies are compact JSON with
non-ASCII kept as UTF-8, as JavaScript's JSON.stringify writes them.
"""
import json
import re
import threading

COLLECTION_ALLOW = "GET, POST"
ITEM_ALLOW = "GET, PUT, PATCH, DELETE"
ITEM_METHODS = ("GET", "HEAD", "PUT", "PATCH", "DELETE")
ID_PATTERN = re.compile(r"[1-9][0-9]{0,14}\Z")
DIGITS = re.compile(r"[0-9]+\Z")

_lock = threading.Lock()  # the worker may run several threads
_tasks = {}
_next_id = 1


def reset():
    """Forgets every task and restarts ids at 1 (for tests)."""
    global _tasks, _next_id
    with _lock:
        _tasks = {}
        _next_id = 1


class BadRequest(Exception):
    pass


# ---- responses ----

def _send_json(start_response, status, value, extra=()):
    # JSON.stringify escapes lone surrogates as \udxxx (lower case), which is
    # exactly what backslashreplace writes; everything else is plain UTF-8.
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")
    start_response(status, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    ] + list(extra))
    return [body]


def _send_error(start_response, status, message, extra=()):
    return _send_json(start_response, status, {"error": message}, extra)


# ---- request bodies ----

def _read_body(environ):
    """CONTENT_LENGTH bytes, or all of it when the input is terminated (chunked)."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if DIGITS.match(length):
        return stream.read(int(length)) if int(length) > 0 else b""
    return stream.read() if environ.get("wsgi.input_terminated") else b""


def _reject_constant(name):
    raise ValueError("not JSON: " + name)  # NaN and Infinity are not JSON


def _read_json_object(environ):
    try:
        # Decode first: json.loads(bytes) would also guess UTF-16/32.
        value = json.loads(_read_body(environ).decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BadRequest("invalid JSON")
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    return value


def _validate_fields(body, is_partial):
    fields = {}
    if "title" in body or not is_partial:
        title = body.get("title")
        if "title" not in body or (isinstance(title, str) and title == ""):
            raise BadRequest("title is required")
        if not isinstance(title, str):
            raise BadRequest("title must be a string")
        fields["title"] = title
    if "done" in body:
        if not isinstance(body["done"], bool):
            raise BadRequest("done must be a boolean")
        fields["done"] = body["done"]
    return fields


# ---- handlers ----

def _task(task_id, title, done):
    return {"id": task_id, "title": title, "done": done}


def _handle_collection(method, environ, start_response):
    global _next_id
    if method in ("GET", "HEAD"):
        with _lock:
            listing = [_tasks[k] for k in sorted(_tasks)]
        return _send_json(start_response, "200 OK", listing)
    if method == "POST":
        fields = _validate_fields(_read_json_object(environ), False)
        with _lock:
            task = _task(_next_id, fields["title"], fields.get("done", False))
            _tasks[_next_id] = task
            _next_id += 1
        return _send_json(start_response, "201 Created", task, [("Location", "/tasks/%d" % task["id"])])
    return _send_error(start_response, "405 Method Not Allowed", "method not allowed", [("Allow", COLLECTION_ALLOW)])


def _handle_item(method, task_id, environ, start_response):
    if method not in ITEM_METHODS:
        return _send_error(start_response, "405 Method Not Allowed", "method not allowed", [("Allow", ITEM_ALLOW)])
    task = _tasks.get(task_id)
    if task is None:
        return _send_error(start_response, "404 Not Found", "not found")
    if method == "PUT":
        fields = _validate_fields(_read_json_object(environ), False)
        task = _task(task_id, fields["title"], fields.get("done", False))
    elif method == "PATCH":
        fields = _validate_fields(_read_json_object(environ), True)
        task = _task(task_id, fields.get("title", task["title"]), fields.get("done", task["done"]))
    elif method == "DELETE":
        with _lock:
            _tasks.pop(task_id, None)
        start_response("204 No Content", [])  # RFC 9110 8.6: no Content-Length on 204
        return []
    else:
        return _send_json(start_response, "200 OK", task)
    with _lock:
        _tasks[task_id] = task
    return _send_json(start_response, "200 OK", task)


def application(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    try:
        if path == "/tasks":
            return _handle_collection(method, environ, start_response)
        if path.startswith("/tasks/") and ID_PATTERN.match(path[7:]):
            return _handle_item(method, int(path[7:]), environ, start_response)
        return _send_error(start_response, "404 Not Found", "not found")
    except BadRequest as err:
        return _send_error(start_response, "400 Bad Request", str(err))


app = application
