"""Benchmark: wrk against gunicorn (production config), measured against two yardsticks.

make bench  (or: .venv/bin/python bench/run.py)

The yardsticks run under the same config/gunicorn.conf.py and wrk settings as the service:
bench/ceiling.py, a hello-world Flask app (the ceiling), and bench/lean.py, the least an
uncached job read needs (the token verified, the service's read function called, the row as
JSON: the lean bound). The workloads are what dashboards do: a cold random job over 1M jobs,
one hot running job again and again, and a wall of 20 running jobs polled with their ETag
(304s); then the earlier cases on the uncached path (ZDM_CACHE_MAX_AGE_MS=0). Then: the
database's transactions per second while the wall is polled by more and more connections, how
soon a write shows (at the default max age and at 250 ms), what the service costs an agent's
writes (pgbench, with the service's objects installed and a wall polled at full speed, against
nothing of ours in the database), the workers' memory, and what each trick of the request path
buys (bench/tricks.py, in process). Every service reads as a role that may only read, as in
production.

Environment: BENCH_JOBS (1000000), BENCH_LINES (10 per job), BENCH_SERVERS (1000),
BENCH_SECONDS per run (10), BENCH_ROUNDS (5; medians are reported), BENCH_MEMORY_REQUESTS
(100000), BENCH_FRESH_WRITES (200), BENCH_TRICK_REQUESTS (3000 per measure), ZDM_BENCH_DIR
(var/bench; the generated data is kept there between runs),
BENCH_CODE (the checkout whose zdm_monitor and config/ are measured, its own init-db included;
this one by default),
BENCH_BEFORE (a checkout, or a git revision checked out into ZDM_BENCH_DIR for the run: measured
beside BENCH_CODE, case by case and round by round, on copies of the databases with its own
init-db),
BENCH_CASES (what to run, comma-separated; every case and part by default): the cases ceiling,
lean (the lean bound of each chosen case it bounds), A, B, C, healthz, 1, 2, 3, 4a, 4b, 5, S1,
S500, and the parts load, freshness, polls, writers, memory, tricks,
BENCH_RESULTS (bench/RESULTS.md for a whole run at the default size; else
ZDM_BENCH_DIR/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg2

from zdm_devstack.demo import load_demo
from zdm_devstack.generate import generate
from zdm_devstack.postgres import EmbeddedPostgres, bin_dir
from zdm_devstack.stack import wait_until_up
from zdm_monitor.ops.cli import make_token

HERE = Path(__file__).resolve().parent
CODE = Path(os.environ.get("BENCH_CODE") or HERE.parent).resolve()
JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
LINES = int(os.environ.get("BENCH_LINES", "10"))
SERVERS = int(os.environ.get("BENCH_SERVERS", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MEMORY_REQUESTS = int(os.environ.get("BENCH_MEMORY_REQUESTS", "100000"))
TRICK_REQUESTS = int(os.environ.get("BENCH_TRICK_REQUESTS", "3000"))
# Three times ZDM_CACHE_SIZE's default: the first measure is taken with the cache full.
MEMORY_WARM_REQUESTS = 12_000
BEFORE = os.environ.get("BENCH_BEFORE", "")
AFTER = "after"  # BENCH_CODE's label beside BENCH_BEFORE's "before"
CHOSEN = [key.strip() for key in os.environ.get("BENCH_CASES", "").split(",") if key.strip()]
FOLDER = Path(os.environ.get("ZDM_BENCH_DIR") or "var/bench").resolve()
# Only a whole run at the default size writes the results the project keeps.
WHOLE = not CHOSEN and JOBS == 1_000_000
RESULTS = Path(
    os.environ.get("BENCH_RESULTS") or (HERE / "RESULTS.md" if WHOLE else FOLDER / "RESULTS.md")
)
DEEP_LINES = 20000
WALL_JOBS = 20
POLL_QUERY = "after={cursor}&limit=50&detail=true"
# The 1M-job database is about 1.3 GB: a server for it would keep its working set in memory,
# as PostgreSQL's development default of 128 MB cannot.
SHARED_BUFFERS = os.environ.get("BENCH_SHARED_BUFFERS", "2GB")
# Each server's workers keep up to a connection per thread open: two checkouts' servers at once
# need more than PostgreSQL's default of 100.
MAX_CONNECTIONS = "300"
SECRET = "bench-secret-bench-secret-bench-secret"
JOB = "/api/backups/monitoring/job/"
SYSTEM = "/api/backups/monitoring/system/"
# Server 1 of the large set is given this many jobs (of servers with its OS) for the server view.
BIG_SERVER_JOBS = 10_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK = ["wrk", "--threads", "2", "--latency"]
STATS_PAUSE_S = 11
CONNECTIONS = 8


def on_our_functions(statement: str, first: str = "") -> str:
    """A DO block that runs `first`, then the statement on each function of ours (its %s)."""
    return f"""
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    {first}
    FOR v_function IN SELECT oid::regprocedure FROM pg_proc WHERE proname LIKE 'zdm\\_monitor\\_%'
    LOOP
        EXECUTE format('{statement}', v_function);
    END LOOP;
END
$$;
"""


# The role every measured service reads as: SELECT on the tables, EXECUTE on our functions.
READER = "zdm_monitor"
READER_GRANTS = on_our_functions(
    "GRANT EXECUTE ON FUNCTION %s TO zdm_monitor",
    """IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'zdm_monitor') THEN
        CREATE ROLE zdm_monitor LOGIN;
    END IF;
    GRANT USAGE ON SCHEMA public TO zdm_monitor;
    GRANT SELECT ON server, repository, backup, backup_info, backup_log TO zdm_monitor;""",
)
# Everything of ours, for the writers' measure without it: our functions, and with them the
# triggers of a release that had some.
DROP_OURS = on_our_functions("DROP FUNCTION %s CASCADE")
OURS = """
SELECT (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal),
       (SELECT count(*) FROM pg_proc WHERE proname LIKE 'zdm\\_monitor\\_%')
"""
UNCACHED = {"ZDM_CACHE_MAX_AGE_MS": "0", "ZDM_CACHE_SIZE": "0"}  # the latter: older releases


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


@dataclass(frozen=True)
class Case:
    key: str  # what BENCH_CASES names it by
    name: str
    server: str  # a key of SERVERS_RUN
    path: str = ""
    script: str = ""  # "id" or "name": random jobs (wrk/jobs.lua); "wall": wrk/wall.lua
    lean: str = ""  # a job read: what the lean bound's request is, said in a few words


# Each server: gunicorn with the checkout's config/gunicorn.conf.py; (database, app, extra env).
SERVERS_RUN: dict[str, tuple[str | None, str, dict[str, str]]] = {
    "ceiling": (None, "ceiling:app", {}),
    "lean": ("large", "lean:app", {}),
    "lean, demo": ("demo", "lean:app", {}),
    "demo": ("demo", "wsgi:app", {}),
    "large": ("large", "wsgi:app", {}),
    "demo, uncached": ("demo", "wsgi:app", UNCACHED),
    "large, uncached": ("large", "wsgi:app", UNCACHED),
    "large, 250 ms": ("large", "wsgi:app", {"ZDM_CACHE_MAX_AGE_MS": "250"}),
}
# The parts after the cases' rounds, and the servers of the measured checkout they ask.
PARTS: dict[str, tuple[str, ...]] = {
    "load": ("large",),
    "freshness": ("large", "large, 250 ms"),
    "polls": (),
    "writers": (),
    "memory": (),
    "tricks": (),
}


def cases(hot_job: int) -> list[Case]:
    by_id = f"random job by ID over {JOBS:,}"
    return [
        Case("ceiling", "bare Flask ceiling (bench/ceiling.py)", "ceiling", JOB + "1"),
        Case("A", f"A. cold: {by_id} jobs", "large", script="id", lean=by_id),
        Case("B", f"B. hot: one running job (ID {hot_job}), full 200s", "large", f"{JOB}{hot_job}"),
        Case(
            "C",
            f"C. wall: {WALL_JOBS} running jobs polled with If-None-Match (304s)",
            "large",
            script="wall",
        ),
        Case(
            "healthz",
            "/healthz (the service's probe, answered without the database)",
            "demo",
            "/healthz",
        ),
        Case(
            "1",
            "1. uncached: demo data, job 1 by ID",
            "demo, uncached",
            JOB + "1",
            lean="demo data, job 1 by ID",
        ),
        Case("2", f"2. uncached: {by_id}", "large, uncached", script="id", lean=by_id),
        Case(
            "3",
            f"3. uncached: random job by name over {JOBS:,}",
            "large, uncached",
            script="name",
            lean=f"random job by name over {JOBS:,}",
        ),
        Case(
            "4a",
            "4a. uncached: job of 20k lines, log page 1",
            "large, uncached",
            JOB + "1?limit=100",
            lean="job of 20k lines, log page 1",
        ),
        Case(
            "4b",
            "4b. uncached: job of 20k lines, log page 200",
            "large, uncached",
            JOB + "1?page=200&limit=100",
            lean="job of 20k lines, log page 200",
        ),
        Case(
            "5",
            "5. uncached: 404 by name",
            "large, uncached",
            JOB + "no-such-job",
            lean="404 by name",
        ),
        Case(
            "S1",
            f"S1. uncached: server view, a server of {BIG_SERVER_JOBS:,} jobs, page 1 of 20 jobs",
            "large, uncached",
            f"{SYSTEM}1?page=1&limit=20",
        ),
        Case(
            "S500",
            f"S500. uncached: server view, a server of {BIG_SERVER_JOBS:,} jobs, page 500",
            "large, uncached",
            f"{SYSTEM}1?page=500&limit=20",
        ),
    ]


def bound(case: Case) -> Case:
    """The lean bound's case for a job read: the same request of bench/lean.py."""
    server = "lean, demo" if case.server.startswith("demo") else "lean"
    return Case("lean", f"lean bound: {case.lean} (bench/lean.py)", server, case.path, case.script)


def choose(all_cases: list[Case], chosen: list[str]) -> tuple[list[Case], set[str]]:
    """The cases and parts BENCH_CASES names (all when it names none): the ceiling, the lean
    bounds, then the service's cases, in the order of cases()."""
    keys = {case.key for case in all_cases} | {"lean"} | set(PARTS)
    unknown = [key for key in chosen if key not in keys]
    if unknown:
        raise SystemExit(f"BENCH_CASES: no such case or part {unknown}; known: {sorted(keys)}")
    wanted = set(chosen) or keys
    picked = [case for case in all_cases if case.key in wanted]
    leans = [bound(case) for case in picked if case.lean] if "lean" in wanted else []
    yardsticks = [case for case in picked if case.key == "ceiling"]
    service = [case for case in picked if case.key != "ceiling"]
    return yardsticks + list(dict.fromkeys(leans)) + service, wanted & set(PARTS)


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
    cpus: set[int] | None = None,
    jobs: int = JOBS,
) -> Run:
    """Run wrk; with a script, random jobs 1..jobs ("id", "name") or the wall ("wall")."""
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
        "BENCH_JOBS": str(jobs),
        "BENCH_BY": script,
        "BENCH_WALL_FILE": str(wall or ""),
    }
    for _ in range(3):
        out = subprocess.run(
            [*command, url],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            preexec_fn=on_cpus(cpus),
        ).stdout
        latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
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
    """Start the server with shared_buffers = SHARED_BUFFERS and room for every server's pools
    (MAX_CONNECTIONS), restarting it when they change."""
    url = postgres.start()
    wanted = {"shared_buffers": SHARED_BUFFERS, "max_connections": MAX_CONNECTIONS}
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT name, current_setting(name) FROM unnest(%s::text[]) name", (list(wanted),)
            )
            if dict(cur.fetchall()) == wanted:
                return url
            for name, value in wanted.items():
                cur.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    postgres.stop()
    return postgres.start()


def apply_measured_schema(url: str, code: Path = CODE) -> None:
    """The checkout's own init-db, then the reader role's grants. What another release
    installed goes first: its functions may not be replaceable by this one's."""
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute(DROP_OURS)
    # Where apply_schema lived in earlier releases: data/database.py, and before the modules
    # moved into subpackages, db.py. Chosen by the checkout's files, not by trying imports: the
    # workshop's editable install would answer a name the checkout lacks with this one's module.
    script = """import pathlib, sys, psycopg2, zdm_monitor
root = pathlib.Path(zdm_monitor.__file__).parent
if (root / "data" / "schema.py").exists():
    from zdm_monitor.data.schema import apply_schema
elif (root / "data").is_dir():
    from zdm_monitor.data.database import apply_schema
else:
    from zdm_monitor.db import apply_schema
apply_schema(psycopg2.connect(sys.argv[1]))"""
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", script, url], env=env, check=True, cwd=code)
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute(READER_GRANTS)


def as_reader(url: str) -> str:
    """The URL of the same database for the role the services read as."""
    return url.replace("postgres@", f"{READER}@", 1)


def prepare(server_url: str, codes: dict[str, Path]) -> dict[str, dict[str, str]]:
    """The demo and the large databases of each checkout measured, with its own init-db: the
    first's made (generated once), each other's copied from them."""
    urls = {"demo": database(server_url, "zdm_demo"), "large": database(server_url, "zdm_large")}
    apply_measured_schema(urls["demo"], CODE)
    with closing(psycopg2.connect(urls["demo"])) as conn:
        load_demo(conn)
    apply_measured_schema(urls["large"], CODE)
    with closing(psycopg2.connect(urls["large"])) as conn:
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
    every = {AFTER: urls}
    for label, code in codes.items():
        if label != AFTER:
            print(f"Copying the databases for {label} ({code})...", flush=True)
            every[label] = {
                db: copy_database(server_url, f"zdm_{db}", f"zdm_{db}_{label}") for db in urls
            }
            for url in every[label].values():
                apply_measured_schema(url, code)
    return every


def copy_database(server_url: str, source: str, name: str) -> str:
    """A new database `name`, a copy of `source` (the files copied: quick at any size)."""
    with closing(psycopg2.connect(server_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
    return server_url.replace("@/postgres?", f"@/{name}?")


def drop_copies(server_url: str, urls: dict[str, dict[str, str]]) -> None:
    """Drop the copies prepare() made (a checkout's own, measured for this run only)."""
    with closing(psycopg2.connect(server_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for label in urls:
                for db in () if label == AFTER else urls[label]:
                    cur.execute(f'DROP DATABASE IF EXISTS "zdm_{db}_{label}" WITH (FORCE)')


@contextmanager
def checkout(spec: str, folder: Path) -> Iterator[Path | None]:
    """BENCH_BEFORE's checkout: a folder as it is, or a git revision checked out (detached)
    into the bench folder for the run and removed after; None when not set."""
    if not spec or Path(spec).is_dir():
        yield Path(spec).resolve() if spec else None
        return
    git = ["git", "-C", str(HERE.parent)]
    found = subprocess.run(
        [*git, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode:
        raise SystemExit(f"BENCH_BEFORE={spec!r} is neither a folder nor a git revision")
    revision = found.stdout.strip()
    target = folder / f"before-{revision[:12]}"
    subprocess.run([*git, "worktree", "remove", "--force", str(target)], capture_output=True)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*git, "worktree", "add", "--detach", str(target), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield target
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(target)], check=True)


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
        status, first, body = get(base, f"{JOB}{job}?limit=50&detail=true", token)
        assert status == 200, (base, job, status, body[:300])
        path = f"{JOB}{job}?" + POLL_QUERY.format(cursor=first["X-Log-Cursor"])
        status, headers, _ = get(base, path, token)
        assert status == 200, (job, status)
        lines.append(f"{path}\t{headers['ETag']}")
    folder.mkdir(parents=True, exist_ok=True)
    wall = folder / "wall.txt"
    wall.write_text("\n".join(lines) + "\n")
    return wall


def committed(url: str) -> int:
    """pg_stat_database.xact_commit of the URL's database (the statistics of the moment)."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return int(cur.fetchone()[0])  # type: ignore[index]


def transactions_per_second(
    base: str, url: str, token: str, script: str, wall: Path, connections: int
) -> tuple[float, float]:
    """PostgreSQL's committed transactions per second while wrk polls with `connections`, and
    wrk's requests per second.

    A backend reports its counts when it is idle, at most every 10 s (PostgreSQL 16): the
    count is taken after such a pause, and what the database commits alone over as long a
    window (measured here too) is taken off.
    """
    wrk(base, token, 3, script, connections, wall)  # every worker has read every key
    time.sleep(STATS_PAUSE_S)
    before = committed(url)
    time.sleep(SECONDS + STATS_PAUSE_S)
    idle = committed(url) - before - 1
    before = committed(url)
    run = wrk(base, token, SECONDS, script, connections, wall)
    time.sleep(STATS_PAUSE_S)
    return (committed(url) - before - 1 - max(0, idle)) / SECONDS, run.rps


def load_by_connections(
    base: str, url: str, token: str, wall: Path, server_wall: Path
) -> dict[str, dict[int, tuple[float, float]]]:
    """Transactions per second of the wall (20 keys) and of one server view (one key), polled
    with their validators by more and more connections."""
    return {
        "wall": {
            n: transactions_per_second(base, url, token, "wall", wall, n) for n in (8, 64, 512)
        },
        "server": {
            n: transactions_per_second(base, url, token, "wall", server_wall, n) for n in (8, 64)
        },
    }


def server_poll(base: str, token: str, path: str, folder: Path) -> Path:
    """A wall file of one server view's path and its validator."""
    _, headers, _ = get(base, path, token)
    poll = folder / f"server-{path.rsplit('/', 1)[1].split('?')[0]}.txt"
    poll.write_text(f"{path}\t{headers['ETag']}\n")
    return poll


def two_jobs(url: str, token: str, jobs: list[int], folder: Path) -> dict[str, float]:
    """1,000 conditional polls of two unchanged jobs on two workers, as fast as four clients
    go: how long they took and how many transactions they cost."""
    process = spawn("two workers", url, "wsgi:app", {}, 18096, folder, workers="2")
    try:
        base = "http://127.0.0.1:18096"
        tags = {job: get(base, f"{JOB}{job}", token)[1]["ETag"] for job in jobs}
        time.sleep(STATS_PAUSE_S)
        before = committed(url)
        started = time.monotonic()
        answers: list[int] = []

        def poll(job: int) -> None:
            for _ in range(250):
                answers.append(get(base, f"{JOB}{job}", token, tags[job])[0])

        threads = [threading.Thread(target=poll, args=(job,)) for job in (*jobs, *jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
        time.sleep(STATS_PAUSE_S)
        assert answers == [304] * 1000, set(answers)
        return {"seconds": seconds, "transactions": committed(url) - before - 1}
    finally:
        process.terminate()
        process.wait(timeout=30)


FRESH_WRITES = int(os.environ.get("BENCH_FRESH_WRITES", "200"))
FRESH_POLL_S = 0.05
# The writes of the freshness measure, taken in turn: what it does, and what shows it. A new
# job is created on the watched server, shown by its wall's summary.
WRITES: tuple[tuple[str, Callable[[Any, Any], bool]], ...] = (
    (
        "UPDATE backup_info SET percent = (percent + 1) %% 100 WHERE backup_id = %(job)s"
        " RETURNING percent",
        lambda data, value: data["job"]["progressInfo"]["percent"] == f"{value}%",
    ),
    (
        "UPDATE backup_info SET status = CASE WHEN status = 'processing' THEN 'preparing'"
        " ELSE 'processing' END WHERE backup_id = %(job)s RETURNING status",
        lambda data, value: data["job"]["progressInfo"]["status"] == value,
    ),
    (
        "INSERT INTO backup_log (backup_id, line, message) SELECT %(job)s, max(line) + 1,"
        " 'bench ' || %(n)s FROM backup_log WHERE backup_id = %(job)s RETURNING message",
        lambda data, value: data["job"]["log"][-1] == value,
    ),
    (
        "WITH new AS (INSERT INTO backup (id, name, server_id, mode, partition, drive)"
        " SELECT %(new)s, 'bench-new-' || %(new)s, id, 'full',"
        " CASE WHEN os = 'linux' THEN '/bench' END, CASE WHEN os = 'windows' THEN 'B:' END"
        " FROM server WHERE id = %(server)s RETURNING id)"
        " INSERT INTO backup_info (backup_id, status, percent) SELECT id, 'processing', 0"
        " FROM new RETURNING (SELECT count(*) + 1 FROM backup_info i JOIN backup b"
        " ON b.id = i.backup_id WHERE b.server_id = %(server)s)",
        lambda data, value: data["summary"]["total"] == value,
    ),
)
NEW_JOBS = 3_000_000


def freshness(base: str, url: str, token: str, jobs: list[int], max_age_s: float) -> list[float]:
    """How long each write takes to show: FRESH_WRITES writes of every kind, each at a random
    moment of the kept answers' age, each polled with the previous validator every 50 ms."""
    delays = []
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT backup_id, percent, status, server_id FROM backup_info"
                " JOIN backup ON id = backup_id WHERE backup_id = ANY(%s)",
                (jobs,),
            )
            saved = cur.fetchall()
            server = saved[0][3]
            try:
                for n in range(FRESH_WRITES):
                    job = jobs[n % len(jobs)]
                    statement, shows = WRITES[n % len(WRITES)]
                    path = f"{SYSTEM}{server}" if n % len(WRITES) == 3 else f"{JOB}{job}"
                    tag = get(base, path, token)[1]["ETag"]  # what the dashboard holds
                    time.sleep(random.uniform(0, max_age_s))
                    cur.execute(
                        statement, {"job": job, "n": n, "new": NEW_JOBS + n, "server": server}
                    )
                    value = cur.fetchone()[0]  # type: ignore[index]
                    written = time.monotonic()
                    while True:
                        status, headers, body = get(base, path, token, tag)
                        if status == 200 and shows(json.loads(body)["data"], value):
                            break
                        if time.monotonic() - written > 30:
                            raise SystemExit(f"a write did not show in 30 s: {statement}")
                        tag = headers.get("ETag", tag)
                        time.sleep(FRESH_POLL_S)
                    delays.append(time.monotonic() - written)
            finally:
                cur.execute("DELETE FROM backup_info WHERE backup_id >= %s", (NEW_JOBS,))
                cur.execute("DELETE FROM backup WHERE id >= %s", (NEW_JOBS,))
                cur.execute("DELETE FROM backup_log WHERE message LIKE 'bench %%'")
                for job, percent, status, _ in saved:
                    cur.execute(
                        "UPDATE backup_info SET percent = %s, status = %s WHERE backup_id = %s",
                        (percent, status, job),
                    )
    return delays


# One agent, and four writing at once (each its own 250 jobs, as each agent writes only its own
# jobs' lines).
WRITER_CLIENTS = (1, 4)
WRITER_ROUNDS = 3
WRITER_SECONDS = 8
WRITER_SCRIPT = """\\set job 2 + :client_id * 250 + random(0, 249)
INSERT INTO backup_log (backup_id, line, logged_at, message)
  SELECT :job, coalesce(max(line), 0) + 1, now(), 'agent line'
  FROM backup_log WHERE backup_id = :job;
UPDATE backup_info SET percent = (percent + 1) % 100, last_report_at = now() WHERE backup_id = :job;
"""
# The writers' measure keeps PostgreSQL and pgbench on one core, the service and its load on
# another: it measures what the service asks of the database, not two programs sharing the CPUs
# of one small machine (in production the service runs on hosts of its own).
DATABASE_CPUS, SERVICE_CPUS = {0}, {1}


@contextmanager
def pinned(pids: list[int], cpus: set[int]) -> Iterator[None]:
    """Keep the processes (a postmaster and its backends: new ones inherit it) on these CPUs."""
    everywhere = os.sched_getaffinity(0)
    for pid in pids:
        os.sched_setaffinity(pid, cpus)
    try:
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.sched_setaffinity(pid, everywhere)


def writers(server_url: str, postmaster: int, token: str, folder: Path) -> dict[str, Any]:
    """An agent's writes (a log line, then progress), rounds interleaved: with the service's
    objects installed and the service polling a wall at full speed ("ours"), and with nothing
    of ours in the database and no service ("none")."""
    url = database(server_url, "zdm_writers", fresh=True)
    apply_measured_schema(url)
    with closing(psycopg2.connect(url)) as conn:
        generate(conn, jobs=1001, servers=10, lines=10, deep_lines=10)
    script = folder / "writer.sql"
    script.write_text(WRITER_SCRIPT)
    dsn = psycopg2.extensions.parse_dsn(url)

    def tps(clients: int) -> float:
        pgbench = [
            str(bin_dir() / "pgbench"),
            "--no-vacuum",
            f"--client={clients}",
            f"--jobs={min(clients, 2)}",
            f"--time={WRITER_SECONDS}",
            f"--file={script}",
            f"--host={dsn['host']}",
            f"--port={dsn['port']}",
            f"--username={dsn.get('user', 'postgres')}",
            "zdm_writers",
        ]
        out = subprocess.run(
            pgbench,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=on_cpus(DATABASE_CPUS),
        ).stdout
        return float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ours(clients: int) -> tuple[float, float, tuple[int, int]]:
        """Writers' tps, the service's req/s meanwhile, and (triggers, functions) installed."""
        apply_measured_schema(url)
        server = spawn("writers", url, "wsgi:app", {}, 18098, folder, cpus=SERVICE_CPUS)
        polls: list[Run] = []
        try:
            load = threading.Thread(
                target=lambda: polls.append(
                    wrk(
                        f"http://127.0.0.1:18098{SYSTEM}1",
                        token,
                        WRITER_SECONDS + 2,
                        cpus=SERVICE_CPUS,
                    )
                )
            )
            load.start()
            time.sleep(1)
            result = tps(clients)
            load.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
        assert polls and polls[0].errors == 0, polls
        return result, polls[0].rps, installed()

    def none(clients: int) -> float:
        with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
            cur.execute(DROP_OURS)
        assert installed() == (0, 0)
        return tps(clients)

    def installed() -> tuple[int, int]:
        with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
            cur.execute(OURS)
            return cur.fetchone()  # type: ignore[return-value]

    measured: dict[Any, Any] = {}
    with pinned(tree(postmaster), DATABASE_CPUS):
        for clients in WRITER_CLIENTS:
            rounds: list[tuple[float, float]] = []
            service_rps: list[float] = []
            for _ in range(WRITER_ROUNDS):
                with_ours, rps, objects = ours(clients)
                rounds.append((with_ours, none(clients)))
                service_rps.append(rps)
            with_, without = (statistics.median(r[i] for r in rounds) for i in (0, 1))
            measured[clients] = {
                "ours": round(with_),
                "none": round(without),
                "rounds": ", ".join(f"{a:.0f}/{b:.0f}" for a, b in rounds),
                "overhead %": round((without - with_) / without * 100, 1),
                "service req/s": round(statistics.median(service_rps)),
                "objects": objects,
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
    cpus: set[int] | None = None,
    code: Path = CODE,
) -> subprocess.Popen[bytes]:
    """gunicorn with the checkout's config, as `gunicorn -c config/gunicorn.conf.py`, reading
    as the reader role; on the given CPUs only, if any."""
    run_dir = folder / f"run-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ZDM_", "GUNICORN_"))},
        "ZDM_JWT_SECRET": SECRET,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_ACCESS_LOG": "/dev/null",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
        "PYTHONPATH": f"{code}{os.pathsep}{HERE}",
        **extra,
    }
    if url:
        env["DATABASE_URL"] = as_reader(url)
    if workers:
        env.update(GUNICORN_WORKERS=workers, GUNICORN_MAX_REQUESTS="0")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(code / "config" / "gunicorn.conf.py"),
        "--chdir",
        str(code),
        app,
    ]
    with open(run_dir / "gunicorn.log", "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=log, cwd=code, preexec_fn=on_cpus(cpus)
        )
    wait_until_up(name, f"http://127.0.0.1:{port}/healthz", 60, process)
    return process


def on_cpus(cpus: set[int] | None) -> Callable[[], None] | None:
    """A child's first step: keep to the given CPUs."""
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def worker_rss_kib(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return rss_kib(int(children[0]))


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


# The two request sets that grew a worker past 500 MB: one job of 20,000 lines of about
# 104 characters asked at 2,000 cursors for 1,000 lines each with detail, and one job of a single
# 500 KB line asked with 999 limits.
LONG_JOB, WIDE_JOB = 3_100_001, 3_100_002
MEMORY_SETS = [
    *(f"{JOB}{LONG_JOB}?after={after}&limit=1000&detail=true" for after in range(2000)),
    *(f"{JOB}{WIDE_JOB}?limit={limit}" for limit in range(1, 1000)),
]


def memory_sets(url: str, token: str, folder: Path) -> list[int]:
    """Every worker's RSS (KiB) after the two request sets, on a server with the defaults."""
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        for job, lines, width in ((LONG_JOB, 20_000, 104), (WIDE_JOB, 1, 500_000)):
            cur.execute(
                "INSERT INTO backup (id, name, server_id, mode, partition)"
                " VALUES (%s, %s, 2, 'full', '/')",
                (job, f"bench-memory-{job}"),
            )
            cur.execute(
                "INSERT INTO backup_info (backup_id, status, percent) VALUES (%s, 'processing', 1)",
                (job,),
            )
            cur.execute(
                "INSERT INTO backup_log (backup_id, line, message)"
                " SELECT %s, n, lpad(n::text, %s, 'x') FROM generate_series(1, %s) n",
                (job, width, lines),
            )
    process = spawn("memory sets", url, "wsgi:app", {}, 18097, folder)
    try:
        base = "http://127.0.0.1:18097"
        paths = iter(MEMORY_SETS)
        lock = threading.Lock()

        def ask() -> None:
            while True:
                with lock:
                    path = next(paths, None)
                if path is None:
                    return
                status, _, _ = get(base, path, token)
                assert status == 200, (path, status)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        return [rss_kib(int(pid)) for pid in workers]
    finally:
        process.terminate()
        process.wait(timeout=30)
        with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
            for table, column in (
                ("backup_log", "backup_id"),
                ("backup_info", "backup_id"),
                ("backup", "id"),
            ):
                cur.execute(f"DELETE FROM {table} WHERE {column} IN (%s, %s)", (LONG_JOB, WIDE_JOB))


def machine() -> str:
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return (
        f"{os.cpu_count()} cores ({cpu.group(1) if cpu else platform.machine()}), "
        f"{int(mem.group(1)) // 1024 // 1024 if mem else '?'} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


Key = tuple[str, str]  # (checkout, case name)


@dataclass
class Measured:
    codes: dict[str, Path]  # AFTER first, then "before" if any
    versions: dict[str, str]  # each checkout's commit, taken while it is there
    cases: list[Case]
    results: dict[Key, list[Run]]
    cpu: dict[Key, list[dict[str, float]]]
    extras: dict[str, Any]


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    postgres = EmbeddedPostgres(FOLDER / "postgres")
    server_url = start_sized(postgres)
    urls: dict[str, dict[str, str]] = {}
    try:
        with checkout(BEFORE, FOLDER) as before:
            codes = {AFTER: CODE, **({"before": before} if before else {})}
            urls = prepare(server_url, codes)
            postmaster = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
            result = measure(codes, urls, server_url, postmaster)
    finally:
        with suppress(psycopg2.Error):
            drop_copies(server_url, urls)
        postgres.stop()
    report(result)


def measure(
    codes: dict[str, Path], urls: dict[str, dict[str, str]], server_url: str, postmaster: int
) -> Measured:
    """The chosen cases, every checkout's in turn within each round, then the chosen parts
    (on the measured checkout, BENCH_CODE, only)."""
    token = make_token(SECRET, "bench", 24 * 3600)
    jobs = running_jobs(urls[AFTER]["large"], WALL_JOBS + 1)
    hot, wall_jobs = jobs[0], jobs[1:]
    measured_cases, parts = choose(cases(hot), CHOSEN)
    wanted = {case.server for case in measured_cases}
    wanted_after = wanted | {name for part in parts for name in PARTS[part]}
    ports: dict[Key, int] = {}
    for label in codes:
        for name in SERVERS_RUN:
            if name in (wanted_after if label == AFTER else wanted):
                ports[label, name] = 18001 + len(ports)
    servers: dict[Key, subprocess.Popen[bytes]] = {}
    results: dict[Key, list[Run]] = {(label, c.name): [] for label in codes for c in measured_cases}
    cpu: dict[Key, list[dict[str, float]]] = {key: [] for key in results}
    extras: dict[str, Any] = {}

    def base(label: str, name: str) -> str:
        return f"http://127.0.0.1:{ports[label, name]}"

    try:
        for (label, name), port in ports.items():
            db, app, extra = SERVERS_RUN[name]
            url = urls[label][db] if db else None
            title = f"{name}, {label}" if label != AFTER else name
            servers[label, name] = spawn(title, url, app, extra, port, FOLDER, code=codes[label])
        walls = {
            label: wall_polls(base(label, "large"), token, wall_jobs, FOLDER / f"wall-{label}")
            for label in codes
            if (label, "large") in ports
        }

        def run(label: str, case: Case, seconds: int) -> Run:
            url = base(label, case.server) + (case.path or "/")
            return wrk(url, token, seconds, case.script, wall=walls.get(label))

        for case in measured_cases:  # warm-up: caches, pools, the token cache
            for label in codes:
                run(label, case, 2)
        for round_ in range(ROUNDS):
            print(f"round {round_ + 1}/{ROUNDS}", flush=True)
            # Each checkout goes first in every other round.
            order = list(codes) if round_ % 2 == 0 else list(codes)[::-1]
            for case in measured_cases:
                for label in order:
                    process = servers[label, case.server]
                    result, spent = measured(
                        partial(run, label, case, SECONDS),
                        partial(processes, process.pid, postmaster),
                    )
                    results[label, case.name].append(result)
                    per_request = {k: v / result.requests * 1e6 for k, v in spent.items()}
                    cpu[label, case.name].append(per_request)
        large = urls[AFTER]["large"]
        if "load" in parts:
            print("the database's load by connections...", flush=True)
            front = base(AFTER, "large")
            big_server = server_poll(front, token, f"{SYSTEM}1?page=1&limit=20", FOLDER)
            extras["load"] = load_by_connections(front, large, token, walls[AFTER], big_server)
        if "freshness" in parts:
            print("freshness after writes...", flush=True)
            extras["fresh"] = {
                1000: freshness(base(AFTER, "large"), large, token, wall_jobs, 1.0),
                250: freshness(base(AFTER, "large, 250 ms"), large, token, wall_jobs, 0.25),
            }
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
        servers.clear()
        if "tricks" in parts:
            print("what each trick of the request path buys (in process)...", flush=True)
            extras["tricks"] = tricks(large, token, hot, wall_jobs, FOLDER)
        if "polls" in parts:
            print("1,000 polls of two jobs on two workers...", flush=True)
            extras["two jobs"] = two_jobs(large, token, wall_jobs[:2], FOLDER)
        if "writers" in parts:
            print("writers with and without the service...", flush=True)
            extras["writers"] = writers(server_url, postmaster, token, FOLDER)
        if "memory" in parts:
            print("memory...", flush=True)
            extras["rss"] = memory(large, token, FOLDER)
            extras["rss sets"] = memory_sets(large, token, FOLDER)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
    versions = {label: code_version(code) for label, code in codes.items()}
    return Measured(codes, versions, measured_cases, results, cpu, extras)


def processes(server: int, postmaster: int) -> dict[str, list[int]]:
    """The processes whose CPU time a case counts: the server's gunicorn, and PostgreSQL."""
    return {"gunicorn": tree(server), "PostgreSQL": tree(postmaster)}


def tricks(url: str, token: str, hot: int, wall: list[int], folder: Path) -> dict[str, Any]:
    """What each trick of the request path buys: bench/tricks.py on the measured checkout's
    app, in a process of its own, with a max age longer than its measures."""
    run_dir = folder / "run-tricks"
    (run_dir / "metrics").mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ZDM_", "GUNICORN_"))},
        "DATABASE_URL": as_reader(url),
        "ZDM_JWT_SECRET": SECRET,
        "ZDM_CACHE_MAX_AGE_MS": "600000",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
        "PYTHONPATH": f"{CODE}{os.pathsep}{HERE}",
        "BENCH_TOKEN": token,
    }
    command = [
        sys.executable,
        str(HERE / "tricks.py"),
        f"--hot={hot}",
        f"--wall={','.join(map(str, wall))}",
        f"--rounds={ROUNDS}",
        f"--requests={TRICK_REQUESTS}",
    ]
    with open(run_dir / "tricks.log", "wb") as log:
        done = subprocess.run(command, env=env, cwd=CODE, stdout=subprocess.PIPE, stderr=log)
    if done.returncode:
        raise SystemExit(f"bench/tricks.py failed (exit {done.returncode}): {log.name}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in runs))


Ratio = tuple[float, list[float]]  # the ratio of the medians, and the same ratio in each round


def ratio(
    results: dict[Key, list[Run]], a: Key, b: Key, field: str = "rps", other: str = ""
) -> Ratio | None:
    """a's field over b's other (the same field by default); None unless both were measured."""
    if a not in results or b not in results:
        return None
    other = other or field
    pairs = zip(results[a], results[b], strict=True)
    rounds = [getattr(x, field) / getattr(y, other) for x, y in pairs]
    return median(results[a], field) / median(results[b], other), rounds


def listed(values: list[float], form: str = ".2f") -> str:
    return ", ".join(f"{value:{form}}" for value in values)


def report(m: Measured) -> None:
    lines = header(m)
    if m.cases:
        lines += ["", *case_table(m)]
    found = checks(m)
    if found:
        lines += [
            "",
            "| ratio | value | each round | target |",
            "|---|---:|---|---|",
            *(
                f"| {name} | {value:.2f} | {listed(rounds)} | {target} |"
                for name, (value, rounds), target in found
            ),
        ]
    if m.cases and len(m.codes) > 1:
        lines += ["", *before_after(m)]
    parts = part_lines(m.extras)
    lines += ["", *parts] if parts else []
    if "tricks" in m.extras:
        lines += ["", *tricks_table(m.extras["tricks"])]
    text = "\n".join(lines).rstrip("\n") + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    print(f"Written to {RESULTS}.")


def header(m: Measured) -> list[str]:
    workers = 2 * (os.cpu_count() or 1) + 1
    code = f"code of {m.versions[AFTER]}"
    if len(m.codes) > 1:
        code += f" (after) and of {m.versions['before']} (before; BENCH_BEFORE), measured in "
        code += "turn in each round, each on its own copy of the databases with its own init-db"
    chosen = f" Cases and parts: {', '.join(CHOSEN)} (BENCH_CASES)." if CHOSEN else ""
    return [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench` on {machine()}, {code}."
        + chosen,
        f"Data: demo set; generated {JOBS:,} jobs x {LINES} log lines over {SERVERS:,} servers, "
        f"job 1 with {DEEP_LINES:,} lines. PostgreSQL 16, shared_buffers {SHARED_BUFFERS}. "
        "Every server is gunicorn with config/gunicorn.conf.py's defaults "
        f"({workers} workers x 8 threads), reading as a role that may only read; the ceiling is "
        "bench/ceiling.py (a hello-world Flask app) under the same config, and so is the lean "
        "bound, bench/lean.py (the token verified, the service's read function called with the "
        "service's call, the row as JSON: the least an uncached job read needs). wrk: 2 "
        f"threads, {CONNECTIONS} connections, {SECONDS} s per run, medians of {ROUNDS} rounds "
        "(one round runs every case in turn), all on this machine. CPU us: the CPU time each "
        "group of processes spent per request during the run (gunicorn: master and workers; "
        "PostgreSQL: postmaster and backends; wrk: the load generator). Cases 1-5 and S run on "
        "servers with the snapshot cache off (ZDM_CACHE_MAX_AGE_MS=0): the path of a request "
        "the cache cannot answer.",
    ]


def case_table(m: Measured) -> list[str]:
    """One row per case and checkout: its figures, and its ratios to the yardsticks measured
    with the same checkout's settings."""
    layers = list(next(iter(m.cpu.values()))[0]) if m.cpu else []
    leans = {case.name: bound(case).name for case in m.cases if case.lean}
    both = len(m.codes) > 1
    rows = [
        "| case | "
        + ("code | " if both else "")
        + "req/s | p50 ms | p99 ms | p99/p50 | vs ceiling (median) | vs ceiling (each round) "
        "| vs lean bound | non-2xx | " + " | ".join(f"{layer} CPU us" for layer in layers) + " |",
        "|---|" + ("---|" if both else "") + "---:|---:|---:|---:|---:|---|---:|---:|"
        "" + "---:|" * len(layers),
    ]
    for case in m.cases:
        for label in m.codes:
            key = (label, case.name)
            runs = m.results[key]
            spent = [statistics.median(r[layer] for r in m.cpu[key]) for layer in layers]
            ceiling = ratio(m.results, key, (label, CEILING))
            lean = ratio(m.results, key, (label, leans.get(case.name, "")))
            tail = ratio(m.results, key, key, "p99_ms", "p50_ms")
            assert tail is not None
            rows.append(
                f"| {case.name} | "
                + (f"{label} | " if both else "")
                + f"{median(runs, 'rps'):,.0f} | {median(runs, 'p50_ms'):.2f} | "
                f"{median(runs, 'p99_ms'):.2f} | {tail[0]:.2f} | "
                + (f"{ceiling[0]:.2f} | {listed(ceiling[1])} | " if ceiling else "- | - | ")
                + (f"{lean[0]:.2f} | " if lean else " | ")
                + f"{sum(r.errors for r in runs)} | "
                + " | ".join(f"{us:,.0f}" for us in spent)
                + " |"
            )
    return rows


CEILING = "bare Flask ceiling (bench/ceiling.py)"


def checks(m: Measured) -> list[tuple[str, Ratio, str]]:
    """The ratios the project sets targets for, of the measured checkout, those measured."""
    named = {case.key: (AFTER, case.name) for case in m.cases if case.key != "lean"}

    def of(a: str, b: str, field: str = "rps", other: str = "") -> Ratio | None:
        return ratio(m.results, named.get(a, ("", "")), named.get(b, ("", "")), field, other)

    found: list[tuple[str, Ratio | None, str]] = [
        ("C. wall / ceiling (req/s)", of("C", "ceiling"), ">= 0.85"),
        ("B. hot job / ceiling (req/s)", of("B", "ceiling"), ">= 0.80"),
        ("A. cold random / ceiling (req/s)", of("A", "ceiling"), ">= 0.40"),
    ]
    found += [
        (
            f"{case.key}. / its lean bound (req/s)",
            ratio(m.results, (AFTER, case.name), (AFTER, bound(case).name)),
            ">= 0.9",
        )
        for case in m.cases
        if case.lean
    ]
    found += [
        ("uncached large / small (req/s, 2 / 1)", of("2", "1"), ">= 0.8"),
        ("deep page / page 1 (p50 latency, 4b / 4a)", of("4b", "4a", "p50_ms"), "<= 1.2"),
        ("server view page 500 / page 1 (p50, S500 / S1)", of("S500", "S1", "p50_ms"), "<= 1.5"),
        ("server view page / one job (p50, S1 / 2)", of("S1", "2", "p50_ms"), "<= 3"),
    ]
    tail = of("ceiling", "ceiling", "p99_ms", "p50_ms")
    if tail is not None:
        found += [
            (
                f"{key}. p99/p50 / the ceiling's p99/p50 ({tail[0]:.2f})",
                scaled(of(key, key, "p99_ms", "p50_ms"), tail[0]),
                "<= 1.25",
            )
            for key in ("A", "B", "C")
        ]
    return [(name, value, target) for name, value, target in found if value is not None]


def scaled(measured: Ratio | None, by: float) -> Ratio | None:
    if measured is None:
        return None
    value, rounds = measured
    return value / by, [r / by for r in rounds]


def before_after(m: Measured) -> list[str]:
    """Each case's figures before and after, and its ratio to each one's own ceiling, with
    the difference in each round."""
    rows = [
        "Before and after, measured in turn in each round: requests per second, gunicorn's CPU "
        "time per request, and the ratio to each checkout's own ceiling (difference: after "
        "minus before).",
        "",
        "| case | req/s before | req/s after | gunicorn CPU us before | after "
        "| vs ceiling before | vs ceiling after | difference | each round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in m.cases:
        after, before = (AFTER, case.name), ("before", case.name)
        rps = [median(m.results[key], "rps") for key in (before, after)]
        spent = [statistics.median(r["gunicorn"] for r in m.cpu[key]) for key in (before, after)]
        ratios = [ratio(m.results, (label, case.name), (label, CEILING)) for label in m.codes]
        figures = f"| {case.name} | {rps[0]:,.0f} | {rps[1]:,.0f} | {spent[0]:,.0f} | "
        figures += f"{spent[1]:,.0f} | "
        new, old = ratios
        if new is None or old is None:
            rows.append(figures + "- | - | - | - |")
            continue
        rounds = [a - b for a, b in zip(new[1], old[1], strict=True)]
        rows.append(
            figures + f"{old[0]:.2f} | {new[0]:.2f} | {new[0] - old[0]:+.2f} | "
            f"{listed(rounds, '+.2f')} |"
        )
    return rows


def part_lines(extras: dict[str, Any]) -> list[str]:
    """What the parts after the rounds measured, those that ran."""
    lines: list[str] = []
    workers = 2 * (os.cpu_count() or 1) + 1
    if "load" in extras:
        load = extras["load"]
        lines += [
            "PostgreSQL's transactions per second (`pg_stat_database.xact_commit`) while wrk "
            f"polls with validators, {SECONDS} s a run, against (workers x keys / max age) x 1.2:",
            "",
            "| polled | connections | transactions/s | wrk req/s | target |",
            "|---|---:|---:|---:|---|",
            *(
                f"| {what} | {n} | {tps:.1f} | {rps:,.0f} | <= {workers * keys * 1.2:.0f}"
                f"{', within 1.5x of 8 connections' if n > 8 else ''} |"
                for what, key, keys in (
                    (f"the wall of {WALL_JOBS} running jobs", "wall", WALL_JOBS),
                    (f"one server view of the {BIG_SERVER_JOBS:,}-job server", "server", 1),
                )
                for n, (tps, rps) in load[key].items()
            ),
            "",
        ]
    for age, delays in extras.get("fresh", {}).items():
        lines.append(
            f"- Freshness, max age {age} ms: {len(delays)} writes at random moments (percent, "
            "status, a log line, a job created on a watched server, in turn), each polled with "
            f"the previous validator every {FRESH_POLL_S * 1000:.0f} ms until it showed: p50 "
            f"{statistics.median(delays) * 1000:.0f} ms, longest {max(delays) * 1000:.0f} ms "
            f"(target: at most {age + 150} ms)."
        )
    if "two jobs" in extras:
        lines.append(
            "- 1,000 conditional polls of two unchanged jobs on two workers, in "
            f"{extras['two jobs']['seconds']:.1f} s: {extras['two jobs']['transactions']} "
            "transactions (target: at most 20 within two seconds)."
        )
    if "writers" in extras:
        writer = extras["writers"]
        lines.append(
            "- Writers (pgbench, a log line and a progress update per transaction, "
            f"{WRITER_SECONDS} s runs, {WRITER_ROUNDS} rounds interleaved, medians; PostgreSQL "
            "and pgbench on one core, the service and its load on the other): "
            + "; ".join(
                f"{n} client{'s' if n > 1 else ''}: {writer[n]['ours']:,} tps with the "
                f"service's objects installed ({writer[n]['objects'][0]} triggers, "
                f"{writer[n]['objects'][1]} functions) and a wall polled at "
                f"{writer[n]['service req/s']:,} req/s, {writer[n]['none']:,} with nothing of "
                f"ours ({writer[n]['rounds']}), overhead {writer[n]['overhead %']}%"
                for n in WRITER_CLIENTS
            )
            + " (target: within 5%)."
        )
    if "rss" in extras:
        first, last, done = extras["rss"]
        lines += [
            f"- Worker RSS (one worker, no recycling, random jobs): {first / 1024:.1f} MiB with "
            f"its snapshot cache full (after ~{MEMORY_WARM_REQUESTS:,} requests), "
            f"{last / 1024:.1f} MiB after {done:,} ({(last - first) / first * 100:+.1f}%).",
            f"- Worker RSS after {len(MEMORY_SETS):,} requests (2,000 cursors x 1,000 lines of "
            "104 characters with detail; 999 limits of a job with one 500 KB line), the "
            "defaults: "
            + ", ".join(f"{kib / 1024:.0f}" for kib in extras["rss sets"])
            + " MiB (target: every worker under 200 MiB).",
        ]
    return lines


# Each trick of bench/tricks.py: its row's name, and what stands in for it without it.
TRICKS = {
    "envelope": (
        "envelope.success's f-string",
        "the success envelope written around the payload's JSON; without: Flask's jsonify of "
        "the envelope over the payload",
    ),
    "memo": (
        "memoised bodies and headers",
        "made once per cache entry (entry.memo in monitoring.py, polling.decide's memo); "
        "without: made for each request",
    ),
    "parser": (
        "QueryParser.parse's memo",
        "each distinct query string parsed once; without: webargs' parse every time",
    ),
    "ensure_sync": (
        "SyncFlask.ensure_sync",
        "no coroutine check; without: Flask's, which asks inspect about every hook and view",
    ),
    "all four": ("all four", "without: none of them"),
}
TRICK_CASES = {"B": "B. hot job, 200", "C": "C. wall, 304s"}


def tricks_table(found: dict[str, Any]) -> list[str]:
    """What each trick buys: CPU us a request without it minus with it, and whether that is
    beyond the rounds' spread (every round without above every round with, or below)."""
    rows = [
        "What each trick of the request path buys (bench/tricks.py): the app called as WSGI "
        f"in process, no gunicorn, with the trick and without it, {found['requests']:,} "
        "requests each a round in alternating chunks, a round's figure its fastest chunk; "
        f"CPU microseconds a request, medians of {ROUNDS} rounds, the difference the median "
        "of the rounds' (without minus with). Beyond the spread: every round without the "
        "trick took more than every round with it, or every one less. B: the hot job (a 200 "
        "from the cache); C: the wall's polls (304s from the cache). The tricks:",
        "",
        *(f"- {name}: {what}." for name, what in TRICKS.values()),
        "",
        "| trick | case | with us | without us | difference us | each round (without - with) "
        "| beyond the rounds' spread |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for trick, (what, _) in TRICKS.items():
        for case, name in TRICK_CASES.items():
            arms = found["measures"][case][trick]
            with_, without = arms["with"], arms["without"]
            rounds = [b - a for a, b in zip(with_, without, strict=True)]
            beyond = min(without) > max(with_) or max(without) < min(with_)
            spread = ("yes" if beyond else "no") if len(rounds) > 1 else "- (one round)"
            rows.append(
                f"| {what} | {name} | {statistics.median(with_):.0f} | "
                f"{statistics.median(without):.0f} | {statistics.median(rounds):+.0f} | "
                f"{listed(rounds, '+.0f')} | {spread} |"
            )
    return rows


def code_version(code: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(code), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return f"`{out.stdout.strip()}`" if out.returncode == 0 else str(code)


if __name__ == "__main__":
    main()
