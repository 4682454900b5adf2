"""Prometheus metrics, summed across gunicorn workers (multiprocess mode)."""

from __future__ import annotations

import math
import os
from functools import cache

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .api.context import elapsed_seconds, route_template

REQUESTS = Counter(
    "zdm_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "zdm_http_request_duration_seconds",
    "Time from the request reaching the app to its answer.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POOL = Gauge(
    "zdm_db_pool_connections",
    "Database connections held by the workers' pools, by server (primary, replicaN) and state.",
    ["target", "state"],
    multiprocess_mode="livesum",
)
READS = Counter(
    "zdm_db_reads_total",
    "Reads answered, by the database that answered them (with read replicas configured).",
    ["target"],
)
REPLICA_LAG = Gauge(
    "zdm_db_replica_lag_seconds",
    "How far each read replica is behind the primary, as last measured (+Inf: unreachable).",
    ["replica"],
    multiprocess_mode="livemax",
)
REPLICA_USABLE = Gauge(
    "zdm_db_replica_usable",
    "1 while reads may go to the replica: it answers and lags at most ZDM_REPLICA_MAX_LAG_S.",
    ["replica"],
    multiprocess_mode="livemin",
)

bp = Blueprint("metrics", __name__)


# Any other method (a client may send any token) is counted as OTHER: labels stay bounded.
METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})


# Children are looked up once per label set (labels() validates on every call), and only when
# first used, not at import: in gunicorn's master a child made at import would write into the
# metrics folder before on_starting has prepared it.
@cache
def request_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    labels = (method, route, str(status))
    return REQUESTS.labels(*labels), LATENCY.labels(*labels)


@cache
def pool_series(target: str) -> tuple[Gauge, Gauge]:
    return POOL.labels(target, "idle"), POOL.labels(target, "in_use")


def observe(response: Response) -> Response:
    """Count the request and its latency by route template and status."""
    method = request.method if request.method in METHODS else "OTHER"
    count, latency = request_series(method, route_template(), response.status_code)
    count.inc()
    latency.observe(elapsed_seconds())
    return response


def record_pool(target: str, idle: int, in_use: int) -> None:
    idle_gauge, in_use_gauge = pool_series(target)
    idle_gauge.set(idle)
    in_use_gauge.set(in_use)


def record_read(target: str) -> None:
    READS.labels(target).inc()


def record_replica(name: str, usable: bool, lag_s: float | None) -> None:
    REPLICA_USABLE.labels(name).set(1 if usable else 0)
    REPLICA_LAG.labels(name).set(math.inf if lag_s is None else lag_s)


@bp.get("/metrics")
def metrics() -> Response:
    """Expose the metrics in Prometheus text format."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
