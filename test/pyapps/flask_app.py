"""A small Flask app for test/frameworks.test.ts (served as `flask_app:app`)."""
import hashlib

from flask import Flask, Response, jsonify, make_response, redirect, request, stream_with_context

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name):
    return "Hello, %s!" % name


@app.post("/json")
def echo_json():
    data = request.get_json()
    return jsonify(received=data, doubled=data["n"] * 2)


@app.post("/form")
def form():
    return jsonify(request.form.to_dict(flat=False))


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(name=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(), note=request.form.get("note"))


@app.get("/stream")
def stream():
    @stream_with_context
    def body():
        yield "start %s\n" % request.args.get("who", "?")
        for i in range(3):
            yield "chunk %d\n" % i
        yield "end\n"
    return Response(body(), mimetype="text/plain")


@app.get("/cookie/set")
def set_cookie():
    resp = make_response("cookies set")
    resp.set_cookie("flavor", "chocolate-chip")
    resp.set_cookie("count", "42", httponly=True)
    return resp


@app.get("/cookie/get")
def get_cookie():
    return jsonify(dict(request.cookies))


@app.get("/redirect")
def go_elsewhere():
    return redirect("/hello/redirected")


@app.get("/boom")
def boom():
    raise RuntimeError("flask view raised")
