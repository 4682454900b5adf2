"""gunicorn's settings, each from the environment (docs/configuration.md): run with
`gunicorn -c python:zdm_monitor.runtime.gunicorn_conf zdm_monitor.runtime.wsgi:app`."""

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
    if value in choices:
        return value
    problems.append(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return default


def log_target(name: str) -> str:
    target = env(name, "-")
    if target != "-" and not os.path.isabs(target):
        problems.append(
            f"{name}={target!r} is neither - (the standard stream) nor an absolute path."
        )
    return target


bind = env("GUNICORN_BIND", f"127.0.0.1:{number('PORT', 8000)}")
if bind.startswith("unix:") and not os.path.isabs(bind[5:]):
    problems.append(f"GUNICORN_BIND={bind!r}: a unix socket needs an absolute path.")

# 2 x cores + 1: a request spends part of its time waiting on PostgreSQL.
workers = number("GUNICORN_WORKERS", 2 * (os.cpu_count() or 1) + 1)

# gthread: sync closes the connection after every response. At most threads - 1 wait on the
# database (data/database.py Slots), so one is always free for the probes (docs/reliability.md).
worker_class = "gthread"
threads = number("GUNICORN_THREADS", 8)
if threads < 2:
    problems.append(
        f"GUNICORN_THREADS={threads} leaves no thread free for the probes: give it 2 or more."
    )

# The timeout ladder (docs/deploying.md): a silent worker is killed after a read's deadline and
# before nginx's; SIGTERM waits out any request; nginx closes an idle connection first.
timeout = number("GUNICORN_TIMEOUT", 10)
graceful_timeout = number("GUNICORN_GRACEFUL_TIMEOUT", 15)
keepalive = number("GUNICORN_KEEPALIVE", 75)

# Import the app once in the master: a worker starts by forking, in milliseconds, and a bad
# configuration stops gunicorn before it binds.
YES, NO = ("true", "1", "yes"), ("false", "0", "no")
preload_app = choice("GUNICORN_PRELOAD", "true", YES + NO) in YES

# Recycle workers, jittered, so slow leaks cannot grow; rarely (docs/configuration.md).
max_requests = number("GUNICORN_MAX_REQUESTS", 100000)
max_requests_jitter = number("GUNICORN_MAX_REQUESTS_JITTER", 10000)

# Only nginx on this host may set X-Forwarded-Proto; the app's ProxyFix trusts one hop.
forwarded_allow_ips = env("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# At or above what nginx passes on, so that nginx refuses first (docs/reliability.md).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16380
permit_unconventional_http_method = True

# Every line JSON (logger_class): gunicorn's own at these targets, other libraries' on stderr.
accesslog = log_target("GUNICORN_ACCESS_LOG")
errorlog = log_target("GUNICORN_ERROR_LOG")
loglevel = choice("GUNICORN_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical"))
logger_class = "zdm_monitor.runtime.logs.GunicornLogger"

# gunicorn 27 opens a control socket at one path per user; instances would share it.
control_socket_disable = True

# prometheus_client reads PROMETHEUS_MULTIPROC_DIR when the app is imported: set it first. Unset,
# the workers share a private temporary folder, removed at exit.
_given = metrics_folder(os.environ, problems)
refuse(problems)
METRICS = Path(_given or tempfile.mkdtemp(prefix="zdm-metrics-"))
METRICS.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS)


def remove_metrics_files() -> None:
    """Remove the metrics files of earlier processes, and nothing else of the folder."""
    for path in METRICS.iterdir():
        if METRICS_FILE.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


def on_starting(server: Any) -> None:
    """Start metrics from zero: files left by an earlier run would be summed in."""
    remove_metrics_files()


def on_exit(server: Any) -> None:
    """Take away the private metrics folder this start made; an operator's folder stays."""
    if _given is None:
        remove_metrics_files()
        with suppress(OSError):  # not empty: something else wrote there; leave it
            METRICS.rmdir()


def post_worker_init(worker: Any) -> None:
    """Start the worker's side after fork; /readyz answers 503 once the worker is told to stop."""
    # Imported here: the app's metrics read PROMETHEUS_MULTIPROC_DIR on import.
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
