"""Where a request's CPU goes, with the app called as WSGI in this process (no gunicorn).

.venv/bin/python bench/inprocess.py

On an embedded PostgreSQL with the demo data, read as the service's role, it prints the CPU
microseconds a request takes (medians of ROUNDS rounds of N requests, the arms interleaved):
an uncached read of job 4 by the service and by the lean bound (bench/lean.py); a cached one by
the service, by the service without its request log line, and the ceiling app
(bench/ceiling.py); then, by cProfile, the uncached request's steps in profiled microseconds
(profiling multiplies them about twofold; the read's are mostly waiting on PostgreSQL).
"""

from __future__ import annotations

import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from zdm_devstack.demo import prepare_database
from zdm_devstack.postgres import EmbeddedPostgres
from zdm_devstack.stack import SERVICE_ROLE, create_reader
from zdm_monitor.ops.cli import make_token

N = int(os.environ.get("BENCH_REQUESTS", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECRET = "in-process-bench-secret-long-enough-for-hs256"
PATH = "/api/backups/monitoring/job/4"
# (what, file, function): each step's cumulative time in the profile.
# The log's and WSGI's error stream, open for the process's life.
DEVNULL = open(os.devnull, "w")  # noqa: SIM115
STEPS = [
    ("the whole request", "proxy_fix.py", "__call__"),
    ("the read (slot, pool, deadline, the call, the row)", "data/database.py", "read"),
    (
        "  of which waiting on PostgreSQL",
        "~",
        "<method 'execute' of 'psycopg2.extensions.cursor' objects>",
    ),
    ("the request's JSON log line", "runtime/logs.py", "log_request"),
    ("werkzeug's Response and its WSGI headers", "wrappers/response.py", "__init__"),
    ("", "wrappers/response.py", "__call__"),
    ("the envelope and its JSON", "api/envelope.py", "success"),
    ("the polling headers", "api/polling.py", "decide"),
    ("Flask's request context", "flask/app.py", "request_context"),
    ("the teardown (the connection given back)", "flask/app.py", "do_teardown_appcontext"),
    ("the metrics", "zdm_monitor/metrics.py", "observe"),
    ("the token check", "api/auth.py", "require_token"),
    ("the payload", "api/payloads.py", "monitoring_payload"),
    ("the query", "api/schemas.py", "parse"),
]


def caller(app: Any) -> Callable[[], str]:
    """One GET of PATH with a valid token, as WSGI; returns the status line."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "HTTP_AUTHORIZATION": f"Bearer {make_token(SECRET, 'bench', 3600)}",
    }

    def call() -> str:
        status: list[str] = []
        env = {**environ, "wsgi.input": io.BytesIO(), "wsgi.errors": DEVNULL}
        b"".join(app(env, lambda s, h, e=None: status.append(s)))
        return status[0]

    return call


def cpu_us(call: Callable[[], str]) -> float:
    started = time.process_time()
    for _ in range(N):
        call()
    return (time.process_time() - started) / N * 1e6


def compare(title: str, arms: dict[str, Callable[[], str]]) -> None:
    for name, call in arms.items():
        assert call().startswith("200"), (name, call())
    figures: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(ROUNDS):
        for name, call in arms.items():
            figures[name].append(cpu_us(call))
    print(f"\n{title} (CPU us a request, median of {ROUNDS} x {N}; each round)")
    for name, values in figures.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:40s} {statistics.median(values):6.0f}   {rounds}")


def service(without: tuple[str, ...] = ()) -> Flask:
    """The service's app, started as a worker starts it, its log to /dev/null, without the
    named after_request functions."""
    from zdm_monitor import create_app, state

    app = create_app()
    state.start(app)
    for handler in logging.getLogger("zdm_monitor").handlers:
        handler.setStream(DEVNULL)
    hooks = app.after_request_funcs[None]
    app.after_request_funcs[None] = [f for f in hooks if f.__name__ not in without]
    return app


def profile(call: Callable[[], str]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(N):
        call()
    profiler.disable()
    stats: dict[tuple[str, int, str], Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    print(f"\nthe uncached request's steps (cProfile, profiled us a request, {N} requests)")
    totals: dict[str, float] = {}
    title = ""
    for what, file, function in STEPS:
        title = what or title
        spent = sum(
            v[3] for (f, _, name), v in stats.items() if f.endswith(file) and name == function
        )
        totals[title] = totals.get(title, 0) + spent / N * 1e6
    for what, us in totals.items():
        print(f"  {what:52s} {us:7.0f}")


@contextmanager
def demo_database() -> Iterator[str]:
    """An embedded PostgreSQL with the demo data; the service role's URL."""
    with tempfile.TemporaryDirectory() as folder:
        postgres = EmbeddedPostgres(Path(folder) / "pg")
        owner = postgres.start()
        try:
            prepare_database(owner)
            create_reader(owner, SERVICE_ROLE)
            yield owner.replace("postgres@", f"{SERVICE_ROLE}@", 1)
        finally:
            postgres.stop()


def main() -> None:
    with demo_database() as url, tempfile.TemporaryDirectory() as metrics:
        os.environ.update(DATABASE_URL=url, ZDM_JWT_SECRET=SECRET, PROMETHEUS_MULTIPROC_DIR=metrics)
        sys.path.insert(0, str(Path(__file__).parent))
        import ceiling
        import lean

        os.environ["ZDM_CACHE_MAX_AGE_MS"] = "0"
        uncached = caller(service())
        compare("uncached read", {"service": uncached, "lean bound": caller(lean.app)})
        os.environ.pop("ZDM_CACHE_MAX_AGE_MS")
        compare(
            "cached answer",
            {
                "service": caller(service()),
                "service without its request log line": caller(service(("log_request",))),
                "ceiling app": caller(ceiling.app),
            },
        )
        profile(uncached)


if __name__ == "__main__":
    main()
