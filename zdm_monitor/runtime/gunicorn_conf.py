"""gunicorn settings for zdm-monitor; every value can be overridden from the environment.

Run: gunicorn -c python:zdm_monitor.runtime.gunicorn_conf zdm_monitor.runtime.wsgi:app
(in a checkout, config/gunicorn.conf.py and wsgi.py say the same).

Timeout ladder (each layer gives up after the one below it, so the innermost error is the one
the client sees): PostgreSQL statement_timeout (ZDM_DB_STATEMENT_TIMEOUT_MS, 5 s)
< gunicorn timeout (10 s) < nginx proxy_read_timeout (15 s).
"""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from zdm_monitor.environment import METRICS_FILE, metrics_folder, refuse, setting

# Every problem found below, refused at the end in one line each, before gunicorn starts.
problems: list[str] = []


def env(name: str, default: str) -> str:
    return setting(os.environ, name, problems) or default


def number(name: str, default: int) -> int:
    raw = env(name, str(default))
    if raw.isdigit():
        return int(raw)
    problems.append(f"{name}={raw!r} is not a whole number.")
    return default


def choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env(name, default).lower()
    if value not in choices:
        problems.append(f"{name}={value!r} is not one of {', '.join(choices)}.")
        return default
    return value


def log_target(name: str) -> str:
    """A log file gunicorn appends to: `-` (the standard stream) or an absolute path."""
    target = env(name, "-")
    if target != "-" and not os.path.isabs(target):
        problems.append(
            f"{name}={target!r} is neither - (the standard stream) nor an absolute path."
        )
    return target


# nginx talks to gunicorn over loopback; never expose gunicorn itself.
bind = env("GUNICORN_BIND", f"127.0.0.1:{number('PORT', 8000)}")
if bind.startswith("unix:") and not os.path.isabs(bind[5:]):
    problems.append(f"GUNICORN_BIND={bind!r}: a unix socket needs an absolute path.")

# The usual 2 x cores + 1: a request spends part of its time waiting on PostgreSQL, so a few
# more processes than cores keep the CPUs busy.
workers = number("GUNICORN_WORKERS", 2 * (os.cpu_count() or 1) + 1)

# gthread rather than sync: sync workers close the connection after every response, so
# nginx's upstream keepalive would be wasted and each request would pay a TCP handshake; a
# thread also serves while another waits on the database. Requests are short and CPU-light, so
# a few threads suffice; more would only contend for the GIL. gunicorn's own gthread, through
# its documented settings: slow and pipelining clients are nginx's to absorb (docs/deploying.md).
# At most threads - 1 of them wait on the database at once (data/database.py Slots): one is
# always free for /healthz, /readyz and answers from memory, even when the database freezes.
worker_class = "gthread"
threads = number("GUNICORN_THREADS", 4)
if threads < 2:
    problems.append(
        f"GUNICORN_THREADS={threads} leaves no thread free for the probes: give it 2 or more."
    )

# A worker silent for this long is killed: above the statement timeout, below nginx's.
timeout = number("GUNICORN_TIMEOUT", 10)
# SIGTERM lets in-flight requests finish for this long (longer than any request can take).
graceful_timeout = number("GUNICORN_GRACEFUL_TIMEOUT", 15)
# Longer than nginx's upstream keepalive_timeout (60 s), so nginx always closes first and
# never sends a request on a connection gunicorn is closing.
keepalive = number("GUNICORN_KEEPALIVE", 75)

# Import the app once in the master: a worker (including one replacing a recycled worker) then
# starts by forking, in milliseconds instead of a second of imports, and a bad configuration
# stops gunicorn before it binds. Nothing that must not cross fork is made or started at import
# time: each worker starts its own threads after fork (post_worker_init), and opens its database
# connections as its requests need them.
YES, NO = ("true", "1", "yes"), ("false", "0", "no")
preload_app = choice("GUNICORN_PRELOAD", "true", YES + NO) in YES

# Recycle workers now and then so slow leaks cannot grow; jitter keeps them from restarting
# together. Rarely: a worker's RSS grows by under 1% over 100,000 requests (make bench), and each
# recycle costs its connections a pause of about 0.1 s and the machine a cold worker and a new
# database backend. On make bench's case 3 (random jobs over 1M, wrk with 6 connections),
# recycling at 10,000 gave a median p99 of about 14 ms against 10 ms at 100,000.
max_requests = number("GUNICORN_MAX_REQUESTS", 100000)
max_requests_jitter = number("GUNICORN_MAX_REQUESTS_JITTER", 10000)

# Only nginx on this host may set X-Forwarded-Proto; the app's ProxyFix trusts one hop.
forwarded_allow_ips = env("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# What gunicorn refuses it answers with an HTML page of its own, which nginx would pass on, so
# nginx refuses first (docs/reliability.md). A request line nginx passes on is at most 8,190
# bytes (one 8k buffer): gunicorn's most. A header line is at most 8,192 with its end, which
# gunicorn counts too: its limit is twice that, less a little. nginx passes on only the dozen
# headers the service reads, far under 100; and any method made of A-Z, _ and -, which gunicorn
# takes as it takes any token, for the app to answer (405). Alone, they bound direct callers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16380
permit_unconventional_http_method = True

# JSON access log on stdout, with the request ID the app answered with.
accesslog = log_target("GUNICORN_ACCESS_LOG")
errorlog = log_target("GUNICORN_ERROR_LOG")
loglevel = choice("GUNICORN_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical"))
logger_class = "zdm_monitor.runtime.logs.GunicornLogger"
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "zdm_monitor.runtime.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}

# gunicorn 27 opens a control socket at one path per user; instances would share it.
control_socket_disable = True

# prometheus_client reads PROMETHEUS_MULTIPROC_DIR when the app is imported: set it first. Unset,
# the workers share a private temporary folder, removed at exit; set, it names the operator's
# folder, where only the files prometheus_client writes are ever removed.
_given = metrics_folder(os.environ, problems)
refuse(problems)
_private = _given is None
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _given or tempfile.mkdtemp(prefix="zdm-metrics-")
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


def remove_metrics_files() -> None:
    """Remove the metrics files of earlier processes, and nothing else of the folder."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for path in folder.iterdir():
        if METRICS_FILE.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


def on_starting(server: Any) -> None:
    """Start metrics from zero: files left by an earlier run would be summed in."""
    remove_metrics_files()


def on_exit(server: Any) -> None:
    """Take away the private metrics folder this start made; an operator's folder stays."""
    if _private:
        remove_metrics_files()
        with suppress(OSError):  # not empty: something else wrote there; leave it
            Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).rmdir()


def post_worker_init(worker: Any) -> None:
    """Start the worker's database side (after fork, sized for its threads), and make /readyz
    answer 503 from the moment the worker is told to stop."""
    # Imported here, not at the top: the app's metrics read PROMETHEUS_MULTIPROC_DIR on import.
    from zdm_monitor import state

    app = worker.wsgi
    if not state.serves(app):  # another app under these settings (bench/ceiling.py)
        return
    state.start(app, worker.cfg.threads)
    graceful_exit = signal.getsignal(signal.SIGTERM)

    def draining(signum: int, frame: Any) -> None:
        state.start_draining(app)
        if callable(graceful_exit):
            graceful_exit(signum, frame)

    signal.signal(signal.SIGTERM, draining)


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's database connections once its last request is done."""
    from zdm_monitor import state

    if state.serves(worker.wsgi):
        state.close(worker.wsgi)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (pool connections) from the metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
