"""The yardstick of make bench: a hello-world Flask app under the service's gunicorn config.

Whatever the service does beyond this (routing, token, query, database, JSON, logs, metrics) is
what a request costs above Flask itself.
"""

from flask import Flask

app = Flask(__name__)
BODY = '{"success": true, "data": {"status": "ok"}}'


@app.get("/<path:path>")
def answer(path: str) -> tuple[str, int, dict[str, str]]:
    return BODY, 200, {"Content-Type": "application/json"}
