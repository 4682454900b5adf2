"""Capacity: requests per second through nginx to one gunicorn node and to two, in one run.

make capacity  (or: .venv/bin/python bench/capacity.py)

Starts the cluster of `make cluster` (nginx -> gunicorn nodes -> PgBouncer -> streaming replica)
with every node at config/gunicorn.conf.py's defaults, and a second nginx in front of node 1
only; generates CAPACITY_JOBS jobs on the primary (kept between runs) and waits for the replica;
then drives both nginx with wrk in turn (random jobs by ID), medians of the rounds. During the
two-node runs it also counts the CPU time each layer spends per request and the connections at
each layer, and it measures the log table's bytes per line. Prints it all and writes
bench/CAPACITY.md.

Environment: CAPACITY_JOBS (100000), CAPACITY_SECONDS (10), CAPACITY_ROUNDS (3),
CAPACITY_CONNECTIONS (16), ZDM_CAPACITY_DIR (var/capacity).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import psycopg2
from run import WRK, Run, machine, measured, tree, wrk

from zdm_devstack.cluster import PRIMARY_DB, REPLICA_DB, ROLE, Cluster
from zdm_devstack.generate import generate
from zdm_devstack.stack import start_nginx
from zdm_monitor.ops.cli import make_token

HERE = Path(__file__).resolve().parent
JOBS = int(os.environ.get("CAPACITY_JOBS", "100000"))
SECONDS = int(os.environ.get("CAPACITY_SECONDS", "10"))
ROUNDS = int(os.environ.get("CAPACITY_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("CAPACITY_CONNECTIONS", "16"))
LINES, SERVERS, DEEP_LINES = 10, 1000, 1000
SECRET = "capacity-secret-capacity-secret-capacity"
POLL_S = 5
CLIENT_STATES = ("cl_active", "cl_waiting", "cl_idle")
SERVER_STATES = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
CONNECTION_QUERY = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"


def layers(cluster: Cluster, one_node_nginx: subprocess.Popen[bytes]) -> dict[str, list[int]]:
    """The processes of each layer."""
    assert cluster.nginx is not None and cluster.postgres and cluster.replica
    assert cluster.pgbouncer.process is not None

    def postmaster(pgdata: Path) -> int:
        return int((pgdata / "postmaster.pid").read_text().split()[0])

    return {
        "nginx": tree(cluster.nginx.pid) + tree(one_node_nginx.pid),
        "gunicorn": [pid for node in cluster.nodes if node for pid in tree(node.pid)],
        "PgBouncer": [cluster.pgbouncer.process.pid],
        "PostgreSQL replica": tree(postmaster(cluster.replica.pgdata)),
        "PostgreSQL primary": tree(postmaster(cluster.postgres.pgdata)),
    }


def connections(cluster: Cluster) -> dict[str, int]:
    """Clients and servers at PgBouncer, and the role's backends on each PostgreSQL."""
    counts: dict[str, int] = {}
    for pool in cluster.pgbouncer.show("POOLS", ROLE):
        if pool["database"] in (PRIMARY_DB, REPLICA_DB):
            # PgBouncer 1.18 counts idle clients in cl_active; later versions apart.
            clients = sum(pool.get(k, 0) for k in CLIENT_STATES)
            servers = sum(pool.get(k, 0) for k in SERVER_STATES)
            counts[f"PgBouncer clients, {pool['database']}"] = clients
            counts[f"PgBouncer server connections, {pool['database']}"] = servers
    for name, server in (("replica", cluster.replica), ("primary", cluster.postgres)):
        assert server is not None
        with closing(psycopg2.connect(server.url())) as conn, conn.cursor() as cur:
            cur.execute(CONNECTION_QUERY, (ROLE,))
            row = cur.fetchone()
            counts[f"PostgreSQL backends of {ROLE}, {name}"] = int(row[0]) if row else 0
    return counts


def prepare(cluster: Cluster) -> dict[str, float]:
    """Generate the jobs once; wait for the replica to have them; the log table's sizes."""
    assert cluster.postgres is not None and cluster.replica is not None
    with closing(psycopg2.connect(cluster.postgres.url())) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM backup")
            row = cur.fetchone()
        conn.commit()
        if row is None or row[0] != JOBS:
            print(f"Generating {JOBS:,} jobs x {LINES} log lines over {SERVERS:,} servers...")
            generate(conn, jobs=JOBS, servers=SERVERS, lines=LINES, deep_lines=DEEP_LINES)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_total_relation_size('backup_log'), (SELECT count(*) FROM backup_log),"
                " pg_total_relation_size('backup') + pg_total_relation_size('backup_info')"
            )
            log_bytes, log_lines, job_bytes = cur.fetchone()  # type: ignore[misc]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with closing(psycopg2.connect(cluster.replica.url())) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM backup_log")
            row = cur.fetchone()
        if row is not None and row[0] == log_lines:
            break
        time.sleep(1)
    else:
        raise SystemExit("the replica did not catch up within 5 minutes")
    return {
        "bytes per log line (table and index)": log_bytes / log_lines,
        "bytes per job (definition and runtime, with indexes)": job_bytes / JOBS,
    }


def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    folder = Path(os.environ.get("ZDM_CAPACITY_DIR") or "var/capacity").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ZDM_JWT_SECRET": SECRET, "GUNICORN_ACCESS_LOG": "/dev/null"}
    for name in ("GUNICORN_WORKERS", "DATABASE_URL", "DATABASE_REPLICA_URLS"):
        env.pop(name, None)
    with open(folder / "cluster.log", "wb") as output:
        cluster = Cluster(folder, 18200, env=env, output=output)
        one: subprocess.Popen[bytes] | None = None
        try:
            cluster.start()
            one = start_nginx(folder / "nginx-one-node", 18210, cluster.node_ports[:1], output)
            sizes = prepare(cluster)
            results = measure(cluster, one)
        finally:
            if one is not None:
                one.terminate()
                one.wait(timeout=30)
            cluster.stop()
    report(cluster, sizes, *results)
    return 0


def measure(
    cluster: Cluster, one: subprocess.Popen[bytes]
) -> tuple[dict[str, list[Run]], dict[str, float], dict[str, int], int]:
    token = make_token(SECRET, "capacity", 24 * 3600)
    targets = {"1 node": 18210, f"{len(cluster.nodes)} nodes": cluster.port}

    def load(port: int, seconds: int) -> Run:
        url = f"http://127.0.0.1:{port}/"
        return wrk(url, token, seconds, "id", connections=CONNECTIONS, jobs=JOBS)

    for port in targets.values():  # warm-up: pools, caches, every worker's first check
        load(port, 3)
    runs: dict[str, list[Run]] = {name: [] for name in targets}
    cpu: dict[str, float] = {}
    served = 0
    for round_ in range(ROUNDS):
        print(f"round {round_ + 1}/{ROUNDS}")
        for name, port in targets.items():
            if port == cluster.port:
                result, spent = measured(
                    partial(load, port, SECONDS), partial(layers, cluster, one)
                )
                served += result.requests
                for layer, seconds in spent.items():
                    cpu[layer] = cpu.get(layer, 0.0) + seconds
            else:
                result = load(port, SECONDS)
            runs[name].append(result)
    # Connections while loaded: a short run, counted halfway.
    options = ["--connections", str(CONNECTIONS), "--duration", "4s"]
    script = ["--script", str(HERE / "wrk" / "jobs.lua")]
    counting = subprocess.Popen(
        [*WRK, *options, *script, f"http://127.0.0.1:{cluster.port}/"],
        env={**os.environ, "BENCH_TOKEN": token, "BENCH_JOBS": str(JOBS), "BENCH_BY": "id"},
        stdout=subprocess.DEVNULL,
    )
    time.sleep(2)
    counts = connections(cluster)
    counting.wait()
    return runs, cpu, counts, served


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in runs))


def report(
    cluster: Cluster,
    sizes: dict[str, float],
    runs: dict[str, list[Run]],
    cpu: dict[str, float],
    counts: dict[str, int],
    served: int,
) -> None:
    workers = 2 * (os.cpu_count() or 1) + 1
    rows = [
        f"| nginx -> gunicorn ({workers} workers x 8 threads each) | req/s | p50 ms | p99 ms"
        f" | dashboards at one poll / {POLL_S} s | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, results in runs.items():
        rps = median(results, "rps")
        rows.append(
            f"| {name} | {rps:,.0f} | {median(results, 'p50_ms'):.1f} | "
            f"{median(results, 'p99_ms'):.1f} | {rps * POLL_S:,.0f} | "
            f"{sum(r.errors for r in results)} |"
        )
    one, two = (median(r, "rps") for r in runs.values())
    busy = sum(cpu.values())
    cpu_rows = [
        "| layer | CPU ms per request | share |",
        "|---|---:|---:|",
        *(
            f"| {layer} | {seconds / served * 1000:.3f} | {seconds / busy:.0%} |"
            for layer, seconds in sorted(cpu.items(), key=lambda item: -item[1])
        ),
        f"| all | {busy / served * 1000:.3f} | 100% |",
    ]
    lines = [
        "# Capacity",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make capacity` on {machine()}.",
        f"Data: {JOBS:,} generated jobs x {LINES} log lines; random job by ID. wrk: 2 threads, "
        f"{CONNECTIONS} connections, {SECONDS} s per run, medians of {ROUNDS} rounds "
        "(one round runs both setups in turn), on the same machine as everything else. "
        "Path: nginx -> gunicorn -> PgBouncer (transaction pooling) -> streaming replica.",
        "",
        *rows,
        "",
        f"Two nodes / one node: {two / one:.2f}.",
        "",
        f"CPU per request by layer, two-node runs ({served:,} requests):",
        "",
        *cpu_rows,
        "",
        "Connections under load (two nodes):",
        "",
        *(f"- {name}: {value}" for name, value in counts.items()),
        "",
        "Sizes on the primary:",
        "",
        *(f"- {name}: {value:,.0f}" for name, value in sizes.items()),
        "",
    ]
    text = "\n".join(lines)
    (HERE / "CAPACITY.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
