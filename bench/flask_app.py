"""The Flask app of bench/python.ts: GET /items/<id> answers {"id": id, "name": "item-<id>"}.

Served by both bunicorn (bench/flask_app.py:app) and gunicorn (--chdir bench flask_app:app).
"""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def get_item(item_id):
    return jsonify(id=item_id, name=f"item-{item_id}")
