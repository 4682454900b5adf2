"""Benchmark: wrk against gunicorn (production config), measured against a bare Flask ceiling.

make bench  (or: .venv/bin/python bench/run.py)

The yardstick is bench/ceiling.py, a hello-world Flask app under the same config/gunicorn.conf.py
and wrk settings. The workloads are what dashboards do: a cold random job over 1M jobs, one hot
running job again and again, and a wall of 20 running jobs polled with their ETag (304s); then
the earlier cases on the uncached path (ZDM_CACHE_SIZE=0), memory, the database's transactions
for 1,000 conditional polls, freshness after writes, and the cost the change triggers add to
writers (pgbench).

Environment: BENCH_JOBS (1000000), BENCH_LINES (10 per job), BENCH_SERVERS (1000),
BENCH_SECONDS per run (10), BENCH_ROUNDS (5; medians are reported), BENCH_MEMORY_REQUESTS
(100000), ZDM_BENCH_DIR (var/bench; the generated data is kept there between runs),
BENCH_CODE (the checkout whose zdm_monitor and config/ are measured; this one by default),
BENCH_RESULTS (bench/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

from zdm_devstack.demo import load_demo
from zdm_devstack.generate import generate
from zdm_devstack.postgres import EmbeddedPostgres, bin_dir
from zdm_devstack.stack import wait_until_up
from zdm_monitor.cli import make_token
from zdm_monitor.db import apply_schema

HERE = Path(__file__).resolve().parent
CODE = Path(os.environ.get("BENCH_CODE") or HERE.parent).resolve()
JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
LINES = int(os.environ.get("BENCH_LINES", "10"))
SERVERS = int(os.environ.get("BENCH_SERVERS", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MEMORY_REQUESTS = int(os.environ.get("BENCH_MEMORY_REQUESTS", "100000"))
# Three times ZDM_CACHE_SIZE's default: the first measure is taken with the cache full.
MEMORY_WARM_REQUESTS = 12_000
RESULTS = Path(os.environ.get("BENCH_RESULTS") or HERE / "RESULTS.md")
DEEP_LINES = 20000
WALL_JOBS = 20
POLL_QUERY = "after={cursor}&limit=50&detail=true"
# The 1M-job database is about 1.3 GB: a server for it would keep its working set in memory,
# as PostgreSQL's development default of 128 MB cannot.
SHARED_BUFFERS = os.environ.get("BENCH_SHARED_BUFFERS", "2GB")
SECRET = "bench-secret-bench-secret-bench-secret"
JOB = "/api/backups/monitoring/job/"
SYSTEM = "/api/backups/monitoring/system/"
# Server 1 of the large set is given this many jobs (of servers with its OS) for the server view.
BIG_SERVER_JOBS = 10_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK = ["wrk", "--threads", "2", "--latency"]
STATS_PAUSE_S = 11
CONNECTIONS = 8


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


@dataclass
class Case:
    name: str
    server: str  # a key of SERVERS_RUN
    path: str = ""
    script: str = ""  # "id" or "name": random jobs (wrk/jobs.lua); "wall": wrk/wall.lua
    ratio: bool = True  # reported against the ceiling


# Each server: gunicorn with the checkout's config/gunicorn.conf.py; (database, app, extra env).
SERVERS_RUN: dict[str, tuple[str | None, str, dict[str, str]]] = {
    "ceiling": (None, "ceiling:app", {}),
    "demo": ("demo", "wsgi:app", {}),
    "large": ("large", "wsgi:app", {}),
    "demo, uncached": ("demo", "wsgi:app", {"ZDM_CACHE_SIZE": "0"}),
    "large, uncached": ("large", "wsgi:app", {"ZDM_CACHE_SIZE": "0"}),
}


def cases(hot_job: int) -> list[Case]:
    return [
        Case("bare Flask ceiling (bench/ceiling.py)", "ceiling", JOB + "1"),
        Case(f"A. cold: random job by ID over {JOBS:,} jobs", "large", script="id"),
        Case(f"B. hot: one running job (ID {hot_job}), full 200s", "large", f"{JOB}{hot_job}"),
        Case(
            f"C. wall: {WALL_JOBS} running jobs polled with If-None-Match (304s)",
            "large",
            script="wall",
        ),
        Case("/healthz (the service's probe, answered in the worker's loop)", "demo", "/healthz"),
        Case("1. uncached: demo data, job 1 by ID", "demo, uncached", JOB + "1"),
        Case(f"2. uncached: random job by ID over {JOBS:,}", "large, uncached", script="id"),
        Case(f"3. uncached: random job by name over {JOBS:,}", "large, uncached", script="name"),
        Case("4a. uncached: job of 20k lines, log page 1", "large, uncached", JOB + "1?limit=100"),
        Case(
            "4b. uncached: job of 20k lines, log page 200",
            "large, uncached",
            JOB + "1?page=200&limit=100",
        ),
        Case("5. uncached: 404 by name", "large, uncached", JOB + "no-such-job"),
        Case(
            f"S1. uncached: server view, a server of {BIG_SERVER_JOBS:,} jobs, page 1 of 20 jobs",
            "large, uncached",
            f"{SYSTEM}1?page=1&limit=20",
        ),
        Case(
            f"S500. uncached: server view, a server of {BIG_SERVER_JOBS:,} jobs, page 500",
            "large, uncached",
            f"{SYSTEM}1?page=500&limit=20",
        ),
    ]


def milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str,
    token: str,
    seconds: int,
    script: str = "",
    connections: int = CONNECTIONS,
    wall: Path | None = None,
) -> Run:
    """Run wrk; with a script, random jobs 1..JOBS ("id", "name") or the wall ("wall")."""
    command = [*WRK, "--connections", str(connections), "--duration", f"{seconds}s"]
    if script == "wall":
        command += ["--script", str(HERE / "wrk" / "wall.lua")]
    elif script:
        command += ["--script", str(HERE / "wrk" / "jobs.lua")]
    else:
        command += ["--header", f"Authorization: Bearer {token}"]
    env = {
        **os.environ,
        "BENCH_TOKEN": token,
        "BENCH_JOBS": str(JOBS),
        "BENCH_BY": script,
        "BENCH_WALL_FILE": str(wall or ""),
    }
    for _ in range(3):
        out = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, env=env
        ).stdout
        latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
        if "Socket errors" not in out and "99" in latency:
            break
        print(f"  wrk saw socket errors or no latency; again:\n{out}", flush=True)
    else:
        raise SystemExit(f"wrk kept failing:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=milliseconds(latency["50"]),
        p99_ms=milliseconds(latency["99"]),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        errors=int(errors.group(1)) if errors else 0,
    )


def tree(pid: int) -> list[int]:
    """pid and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of the processes, with their children already reaped (a postmaster's backends)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def measured(
    load: Callable[[], Run], groups: Callable[[], dict[str, list[int]]]
) -> tuple[Run, dict[str, float]]:
    """Run the load; also the CPU seconds each group of processes (and wrk) spent meanwhile."""
    before = {name: cpu_seconds(pids) for name, pids in groups().items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = load()
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = {name: cpu_seconds(pids) - before[name] for name, pids in groups().items()}
    spent["wrk (the load)"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    return result, spent


def database(server_url: str, name: str, fresh: bool = False) -> str:
    """Create the database if missing (fresh: anew) and return its URL."""
    with closing(psycopg2.connect(server_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            if fresh:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    return server_url.replace("@/postgres?", f"@/{name}?")


def start_sized(postgres: EmbeddedPostgres) -> str:
    """Start the server with shared_buffers = SHARED_BUFFERS (a restart when it changes)."""
    url = postgres.start()
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW shared_buffers")
            if cur.fetchone() == (SHARED_BUFFERS,):
                return url
            cur.execute(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}'")
    postgres.stop()
    return postgres.start()


def prepare(server_url: str) -> dict[str, str]:
    urls = {"demo": database(server_url, "zdm_demo"), "large": database(server_url, "zdm_large")}
    with closing(psycopg2.connect(urls["demo"])) as conn:
        apply_schema(conn)
        load_demo(conn)
    with closing(psycopg2.connect(urls["large"])) as conn:
        apply_schema(conn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), coalesce(max(line), 0) FROM backup"
                " LEFT JOIN backup_log ON backup_id = 1 AND line = %s",
                (DEEP_LINES,),
            )
            jobs, deep = cur.fetchone()  # type: ignore[misc]
        conn.commit()
        if jobs != JOBS or deep != DEEP_LINES:
            print(f"Generating {JOBS:,} jobs x {LINES} log lines over {SERVERS:,} servers...")
            report = generate(conn, jobs=JOBS, servers=SERVERS, lines=LINES, deep_lines=DEEP_LINES)
            print(f"  {report}")
        with conn.cursor() as cur:
            cur.execute(BIG_SERVER, {"jobs": BIG_SERVER_JOBS})
            if cur.rowcount:
                cur.execute("ANALYZE backup")
        conn.commit()
    return urls


# Idempotent: moves jobs only while server 1 has fewer than BIG_SERVER_JOBS.
BIG_SERVER = """
UPDATE backup SET server_id = 1
WHERE (SELECT count(*) FROM backup WHERE server_id = 1) < %(jobs)s
  AND id IN (SELECT b.id FROM backup b JOIN server s ON s.id = b.server_id
             WHERE s.os = (SELECT os FROM server WHERE id = 1) AND b.server_id <> 1
             ORDER BY b.id
             LIMIT %(jobs)s - (SELECT count(*) FROM backup WHERE server_id = 1))
"""


def running_jobs(url: str, count: int) -> list[int]:
    """Processing jobs of the large set, with both halves and a log, by ID."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT b.id FROM backup b JOIN backup_info i ON i.backup_id = b.id"
            " WHERE i.status = 'processing' AND b.id > 1 AND EXISTS"
            " (SELECT FROM backup_log l WHERE l.backup_id = b.id) ORDER BY b.id LIMIT %s",
            (count,),
        )
        return [job for (job,) in cur.fetchall()]


def get(
    base: str, path: str, token: str, etag: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if etag:
        headers["If-None-Match"] = etag
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def wall_polls(base: str, token: str, jobs: list[int], folder: Path) -> Path:
    """The README's polling flow for each job: page 1, then the cursor poll and its ETag."""
    lines = []
    for job in jobs:
        _, first, _ = get(base, f"{JOB}{job}?limit=50&detail=true", token)
        path = f"{JOB}{job}?" + POLL_QUERY.format(cursor=first["X-Log-Cursor"])
        status, headers, _ = get(base, path, token)
        assert status == 200, (job, status)
        lines.append(f"{path}\t{headers['ETag']}")
    wall = folder / "wall.txt"
    wall.write_text("\n".join(lines) + "\n")
    return wall


def committed(url: str) -> int:
    """pg_stat_database.xact_commit of the URL's database (the statistics of the moment)."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return int(cur.fetchone()[0])  # type: ignore[index]


def transactions_per_polls(base: str, url: str, token: str, wall: Path, polls: int = 1000) -> int:
    """How many transactions the database commits while `polls` conditional polls are served.

    A backend reports its counts when it is idle, at most every 10 s (PostgreSQL 16): the count
    is taken after such a pause, and the pause's own background transactions are measured and
    taken off.
    """
    entries = [line.split("\t") for line in wall.read_text().splitlines()]
    for n in range(polls):  # every worker has read every job before counting
        path, etag = entries[n % len(entries)]
        get(base, path, token, etag)
    time.sleep(STATS_PAUSE_S)
    idle_before = committed(url)
    time.sleep(STATS_PAUSE_S)
    idle = committed(url) - idle_before - 1  # what the database does alone meanwhile
    before = committed(url)
    for n in range(polls):
        path, etag = entries[n % len(entries)]
        status, _, _ = get(base, path, token, etag)
        assert status == 304, status
    time.sleep(STATS_PAUSE_S)
    return committed(url) - before - 1 - max(0, idle)


def freshness(base: str, url: str, token: str, job: int, writes: int = 100) -> dict[str, int]:
    """Write on the primary, then poll 200 ms after the commit: how many answers are stale."""
    stale = 0
    path = f"{JOB}{job}?detail=true"
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT percent, message FROM backup_info WHERE backup_id = %s", (job,))
            saved = cur.fetchone()
            try:
                for n in range(writes):
                    get(base, path, token)  # the answer is cached before the write
                    message = f"bench write {n}"
                    cur.execute(
                        "UPDATE backup_info SET message = %s WHERE backup_id = %s", (message, job)
                    )
                    time.sleep(0.2)
                    _, _, body = get(base, path, token)
                    answer = json.loads(body)["data"]["job"]["progressInfo"]["message"]
                    stale += answer != message
            finally:
                cur.execute(
                    "UPDATE backup_info SET percent = %s, message = %s WHERE backup_id = %s",
                    (*saved, job),  # type: ignore[misc]
                )
    return {"writes": writes, "stale answers": stale}


# One agent, and four writing at once (each its own 250 jobs, as each agent writes only its own
# jobs' lines).
WRITER_CLIENTS = (1, 4)
# Each client writes its own 250 jobs, as each agent writes only its own jobs' lines.
WRITER_SCRIPT = """\\set job 2 + :client_id * 250 + random(0, 249)
INSERT INTO backup_log (backup_id, line, logged_at, message)
  SELECT :job, coalesce(max(line), 0) + 1, now(), 'agent line'
  FROM backup_log WHERE backup_id = :job;
UPDATE backup_info SET percent = (percent + 1) % 100, last_report_at = now() WHERE backup_id = :job;
"""


def writers(server_url: str, folder: Path) -> dict[str, Any]:
    """An agent's writes (a log line, then progress) with and without the change triggers."""
    url = database(server_url, "zdm_writers", fresh=True)
    with closing(psycopg2.connect(url)) as conn:
        apply_schema(conn)
        generate(conn, jobs=1001, servers=10, lines=10, deep_lines=10)
    script = folder / "writer.sql"
    script.write_text(WRITER_SCRIPT)
    dsn = psycopg2.extensions.parse_dsn(url)
    triggers = "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'zdm_monitor_%'"

    def tps(clients: int) -> float:
        pgbench = [
            str(bin_dir() / "pgbench"),
            "--no-vacuum",
            f"--client={clients}",
            f"--jobs={min(clients, 2)}",
            "--time=8",
            f"--file={script}",
            f"--host={dsn['host']}",
            f"--port={dsn['port']}",
            f"--username={dsn.get('user', 'postgres')}",
            "zdm_writers",
        ]
        out = subprocess.run(pgbench, capture_output=True, text=True, check=True).stdout
        return float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def set_triggers(enabled: bool) -> None:
        with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
            cur.execute(triggers)
            for (name,) in cur.fetchall():
                table = name.split("_on_")[-1].rsplit("_", 1)[0]
                state = "ENABLE" if enabled else "DISABLE"
                cur.execute(f'ALTER TABLE "{table}" {state} TRIGGER "{name}"')

    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(triggers)
        present = bool(cur.fetchall())
    measured: dict[Any, Any] = {"triggers": present}
    for clients in WRITER_CLIENTS:
        results: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(3):
            for kind in ("with", "without"):
                if present:
                    set_triggers(kind == "with")
                results[kind].append(tps(clients))
        if present:
            set_triggers(True)
        with_, without = (statistics.median(results[k]) for k in ("with", "without"))
        measured[clients] = {
            "with": round(with_),
            "without": round(without),
            "rounds": ", ".join(
                f"{a:.0f}/{b:.0f}" for a, b in zip(results["with"], results["without"], strict=True)
            ),
            "overhead %": round((without - with_) / without * 100, 1),
        }
    return measured


def spawn(
    name: str,
    url: str | None,
    app: str,
    extra: dict[str, str],
    port: int,
    folder: Path,
    workers: str | None = None,
) -> subprocess.Popen[bytes]:
    """gunicorn with the measured checkout's config, as `gunicorn -c config/gunicorn.conf.py`."""
    run_dir = folder / f"run-{name.replace(', ', '-')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ZDM_", "GUNICORN_"))},
        "ZDM_JWT_SECRET": SECRET,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_ACCESS_LOG": "/dev/null",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
        "PYTHONPATH": f"{CODE}{os.pathsep}{HERE}",
        **extra,
    }
    if url:
        env["DATABASE_URL"] = url
    if workers:
        env.update(GUNICORN_WORKERS=workers, GUNICORN_MAX_REQUESTS="0")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(CODE / "config" / "gunicorn.conf.py"),
        "--chdir",
        str(CODE),
        app,
    ]
    with open(run_dir / "gunicorn.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=CODE)
    wait_until_up(name, f"http://127.0.0.1:{port}/healthz", 60, process)
    return process


def worker_rss_kib(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def memory(url: str, token: str, folder: Path) -> tuple[int, int, int]:
    """Worker RSS once its snapshot cache is full, and after MEMORY_REQUESTS requests: one
    worker, no recycling, random jobs (each request a new one until the cache is full)."""
    process = spawn("memory", url, "wsgi:app", {}, 18099, folder, workers="1")
    try:
        base = "http://127.0.0.1:18099/"
        done = 0
        while done < MEMORY_WARM_REQUESTS:
            done += wrk(base, token, 2, "id", connections=4).requests
        first = worker_rss_kib(process.pid)
        while done < MEMORY_REQUESTS:
            done += wrk(base, token, 10, "id", connections=4).requests
        return first, worker_rss_kib(process.pid), done
    finally:
        process.terminate()
        process.wait(timeout=30)


def machine() -> str:
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return (
        f"{os.cpu_count()} cores ({cpu.group(1) if cpu else platform.machine()}), "
        f"{int(mem.group(1)) // 1024 // 1024 if mem else '?'} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    folder = Path(os.environ.get("ZDM_BENCH_DIR") or "var/bench").resolve()
    postgres = EmbeddedPostgres(folder / "postgres")
    server_url = start_sized(postgres)
    urls = prepare(server_url)
    token = make_token(SECRET, "bench", 24 * 3600)
    servers: dict[str, subprocess.Popen[bytes]] = {}
    ports = {name: 18001 + n for n, name in enumerate(SERVERS_RUN)}
    jobs = running_jobs(urls["large"], WALL_JOBS + 1)
    hot, wall_jobs = jobs[0], jobs[1:]
    measured_cases = cases(hot)
    extras: dict[str, Any] = {}
    try:
        for name, (db, app, extra) in SERVERS_RUN.items():
            servers[name] = spawn(name, urls[db] if db else None, app, extra, ports[name], folder)
        wall = wall_polls(f"http://127.0.0.1:{ports['large']}", token, wall_jobs, folder)
        results: dict[str, list[Run]] = {c.name: [] for c in measured_cases}
        cpu: dict[str, list[dict[str, float]]] = {c.name: [] for c in measured_cases}
        postmaster = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])

        def url_of(case: Case) -> str:
            return f"http://127.0.0.1:{ports[case.server]}{case.path or '/'}"

        for case in measured_cases:  # warm-up: caches, pools, the token cache
            wrk(url_of(case), token, 2, case.script, wall=wall)
        for round_ in range(ROUNDS):
            print(f"round {round_ + 1}/{ROUNDS}", flush=True)
            for case in measured_cases:
                result, spent = measured(
                    lambda c=case: wrk(url_of(c), token, SECONDS, c.script, wall=wall),
                    lambda c=case: {
                        "gunicorn": tree(servers[c.server].pid),
                        "PostgreSQL": tree(postmaster),
                    },
                )
                results[case.name].append(result)
                cpu[case.name].append({k: v / result.requests * 1e6 for k, v in spent.items()})
        base = f"http://127.0.0.1:{ports['large']}"
        print("transactions for 1,000 conditional polls...", flush=True)
        extras["xacts"] = transactions_per_polls(base, urls["large"], token, wall)
        print("freshness after writes...", flush=True)
        extras["fresh"] = freshness(base, urls["large"], token, wall_jobs[0])
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
        servers.clear()
        print("writers with and without the change triggers...", flush=True)
        extras["writers"] = writers(server_url, folder)
        print("memory...", flush=True)
        extras["rss"] = memory(urls["large"], token, folder)
    finally:
        for server in servers.values():
            server.terminate()
        postgres.stop()
    report(measured_cases, results, cpu, extras)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def report(
    measured_cases: list[Case],
    results: dict[str, list[Run]],
    cpu: dict[str, list[dict[str, float]]],
    extras: dict[str, Any],
) -> None:
    names = [c.name for c in measured_cases]
    ceiling = names[0]
    layers = list(cpu[ceiling][0])

    def ratio(a: str, b: str, field: str = "rps", other: str = "") -> tuple[float, list[float]]:
        """The ratio of the medians, and the same ratio within each round (the spread)."""
        other = other or field
        pairs = zip(results[a], results[b], strict=True)
        rounds = [getattr(x, field) / getattr(y, other) for x, y in pairs]
        return median(results[a], field) / median(results[b], other), rounds

    rows = [
        "| case | req/s | p50 ms | p99 ms | p99/p50 | vs ceiling (median) "
        "| vs ceiling (each round) | non-2xx | "
        + " | ".join(f"{layer} CPU us" for layer in layers)
        + " |",
        "|---|---:|---:|---:|---:|---:|---|---:|" + "---:|" * len(layers),
    ]
    for name in names:
        runs = results[name]
        spent = [statistics.median(r[layer] for r in cpu[name]) for layer in layers]
        value, rounds = ratio(name, ceiling)
        rows.append(
            f"| {name} | {median(runs, 'rps'):,.0f} | {median(runs, 'p50_ms'):.2f} | "
            f"{median(runs, 'p99_ms'):.2f} | {ratio(name, name, 'p99_ms', 'p50_ms')[0]:.2f} | "
            f"{value:.2f} | {', '.join(f'{r:.2f}' for r in rounds)} | "
            f"{sum(r.errors for r in runs)} | " + " | ".join(f"{us:,.0f}" for us in spent) + " |"
        )
    cold, hot, wall = names[1], names[2], names[3]
    small, large, deep1, deep200 = names[5], names[6], names[8], names[9]
    server1, server500 = names[11], names[12]
    checks = [
        ("C. wall / ceiling (req/s)", ratio(wall, ceiling), ">= 0.85"),
        ("B. hot job / ceiling (req/s)", ratio(hot, ceiling), ">= 0.75"),
        ("A. cold random / ceiling (req/s)", ratio(cold, ceiling), ">= 0.45"),
        ("uncached large / small (req/s, 2 / 1)", ratio(large, small), ">= 0.8"),
        ("deep page / page 1 (p50 latency, 4b / 4a)", ratio(deep200, deep1, "p50_ms"), "<= 1.2"),
        (
            "server view page 500 / page 1 (p50, S500 / S1)",
            ratio(server500, server1, "p50_ms"),
            "<= 1.5",
        ),
        ("server view page / one job (p50, S1 / 2)", ratio(server1, names[6], "p50_ms"), "<= 3"),
        *(
            (f"{name[:2]} p99 / p50", ratio(name, name, "p99_ms", "p50_ms"), "<= 3")
            for name in (cold, hot, wall)
        ),
    ]
    first, last, done = extras["rss"]
    writer = extras["writers"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench` on {machine()}, code of "
        f"{code_version()}.",
        f"Data: demo set; generated {JOBS:,} jobs x {LINES} log lines over {SERVERS:,} servers, "
        f"job 1 with {DEEP_LINES:,} lines. PostgreSQL 16, shared_buffers {SHARED_BUFFERS}. "
        "Every server is gunicorn with config/gunicorn.conf.py's defaults "
        f"({2 * (os.cpu_count() or 1) + 1} workers x 2 threads); the ceiling is bench/ceiling.py "
        "(a hello-world Flask app) under the same config. wrk: 2 threads, "
        f"{CONNECTIONS} connections, {SECONDS} s per run, medians of {ROUNDS} rounds (one round "
        "runs every case in turn), all on this machine. CPU us: the CPU time each group of "
        "processes spent per request during the run (gunicorn: master and workers; PostgreSQL: "
        "postmaster and backends; wrk: the load generator). Cases 1-5 run on servers with the "
        "snapshot cache off (ZDM_CACHE_SIZE=0): the path of a request the cache cannot answer.",
        "",
        *rows,
        "",
        "| ratio | value | each round | target |",
        "|---|---:|---|---|",
        *(
            f"| {name} | {value:.2f} | {', '.join(f'{r:.2f}' for r in rounds)} | {target} |"
            for name, (value, rounds), target in checks
        ),
        "",
        f"- Database transactions while 1,000 conditional polls of unchanged jobs were answered: "
        f"{extras['xacts']} (target: at most 20).",
        f"- Freshness: {extras['fresh']['writes']} writes on the primary, each polled 200 ms after "
        f"its commit: {extras['fresh']['stale answers']} stale answers (target: 0).",
        (
            "- Writers (pgbench, a log line and a progress update per transaction, 8 s runs, "
            "medians of 3 rounds with/without): "
            + "; ".join(
                f"{n} client{'s' if n > 1 else ''}: {writer[n]['with']:,} tps with the change "
                f"triggers, {writer[n]['without']:,} without ({writer[n]['rounds']}), overhead "
                f"{writer[n]['overhead %']}%"
                for n in WRITER_CLIENTS
            )
            + " (target: under 10%)."
            if writer["triggers"]
            else "- Writers: no change triggers in this schema."
        ),
        f"- Worker RSS (one worker, no recycling, random jobs): {first / 1024:.1f} MiB with its "
        f"snapshot cache full (after ~{MEMORY_WARM_REQUESTS:,} requests), "
        f"{last / 1024:.1f} MiB after {done:,} ({(last - first) / first * 100:+.1f}%).",
        "",
    ]
    text = "\n".join(lines)
    RESULTS.write_text(text)
    print(text)


def code_version() -> str:
    out = subprocess.run(
        ["git", "-C", str(CODE), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return f"`{out.stdout.strip()}`" if out.returncode == 0 else str(CODE)


if __name__ == "__main__":
    sys.exit(main())
