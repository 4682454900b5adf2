"""The lean bound of make bench: what one uncached job request needs, and nothing more.

It verifies the HS256 bearer token with pyjwt (on every request: no cache), calls the read
function the service calls, with the service's own call (named arguments and the read guard,
one round trip: repository.GET_JOB_SNAPSHOT) on this thread's connection, and answers the row
as JSON, 404 when the job is not there whole. Under the service's gunicorn settings, what it
serves is as fast as an uncached read of one job can go there; the service's uncached reads are
measured against it. It trusts its input: only make bench's wrk asks it anything.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import jwt
import psycopg2
from flask import Flask, Response, request
from psycopg2.extensions import connection

import zdm_monitor

# The measured checkout's read, by its files: a release from before the modules moved into
# subpackages has repository.py at the top (importing the newer name first would find the
# workshop's editable install's module, not the checkout's).
if (Path(zdm_monitor.__file__).parent / "data").is_dir():
    from zdm_monitor.data.repository import GET_JOB_SNAPSHOT, JobRead, argument_names
else:
    from zdm_monitor.repository import (  # type: ignore[no-redef]
        GET_JOB_SNAPSHOT,
        JobRead,
        argument_names,
    )

app = Flask(__name__)
SECRET = os.environ["ZDM_JWT_SECRET"]
URL = os.environ["DATABASE_URL"]
TIMEOUT_MS = 5000  # the service's default ZDM_DB_STATEMENT_TIMEOUT_MS
LIMIT = 20  # the service's default log page (schemas.DEFAULT_LIMIT)
# Every argument of the call; the filters stay None.
ARGUMENTS = dict.fromkeys([*argument_names(JobRead), "timeout_ms"])
local = threading.local()


def database() -> connection:
    """This thread's connection, opened on first use; each read is its own transaction."""
    conn: connection | None = getattr(local, "conn", None)
    if conn is None or conn.closed:
        conn = local.conn = psycopg2.connect(URL)
        conn.autocommit = True
    return conn


@app.get("/healthz")
def healthz() -> str:
    return "ok"


@app.get("/api/backups/monitoring/job/<path:identifier>")
def job(identifier: str) -> Response:
    _, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        return Response(status=401)
    by_id = identifier.isascii() and identifier.isdigit()
    page, limit = int(request.args.get("page", 1)), int(request.args.get("limit", LIMIT))
    arguments = {
        **ARGUMENTS,
        "job_id": int(identifier) if by_id else None,
        "name": None if by_id else identifier,
        "limit": limit,
        "skip": (page - 1) * limit,
        "detail": False,
        "timeout_ms": TIMEOUT_MS,
    }
    with database().cursor() as cur:
        cur.execute(GET_JOB_SNAPSHOT, arguments)
        row = cur.fetchone()
        names = [column.name for column in cur.description or ()]
    found = dict(zip(names, row, strict=True)) if row else {}
    # A job fails no filter here (the lean bound sends none); `matches` is the read's column in
    # releases before the one that names the filters a job fails (BENCH_BEFORE may run one).
    if not (found.get("has_definition") and found.get("has_runtime") and found.get("matches", 1)):
        return Response('{"success":false}', status=404, mimetype="application/json")
    return Response(json.dumps(found, default=str), mimetype="application/json")
