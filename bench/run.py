"""Benchmark: wrk against gunicorn (production config) on demo and generated data.

make bench  (or: .venv/bin/python bench/run.py)

Environment: BENCH_JOBS (1000000), BENCH_LINES (10 per job), BENCH_SERVERS (1000),
BENCH_SECONDS per run (10), BENCH_ROUNDS (5; medians are reported), BENCH_MEMORY_REQUESTS
(100000), ZDM_BENCH_DIR (var/bench; the generated data is kept there between runs).
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

from zdm_devstack.demo import load_demo
from zdm_devstack.generate import generate
from zdm_devstack.postgres import EmbeddedPostgres
from zdm_devstack.stack import SERVICE_APP, spawn_gunicorn
from zdm_monitor.cli import make_token
from zdm_monitor.db import apply_schema

HERE = Path(__file__).resolve().parent
JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
LINES = int(os.environ.get("BENCH_LINES", "10"))
SERVERS = int(os.environ.get("BENCH_SERVERS", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MEMORY_REQUESTS = int(os.environ.get("BENCH_MEMORY_REQUESTS", "100000"))
DEEP_LINES = 20000
# The 1M-job database is about 1.3 GB: a server for it would keep its working set in memory,
# as PostgreSQL's development default of 128 MB cannot.
SHARED_BUFFERS = os.environ.get("BENCH_SHARED_BUFFERS", "2GB")
SECRET = "bench-secret-bench-secret-bench-secret"
JOB = "/api/backups/monitoring/job/"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK = ["wrk", "--threads", "2", "--latency"]


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
    port_key: str  # "demo" or "large"
    path: str = ""
    script: str = ""  # "id" or "name": random jobs through bench/wrk/jobs.lua


CASES = [
    Case("1. ceiling: /healthz, no database", "demo", "/healthz"),
    Case("2. demo data, job 1 by ID", "demo", JOB + "1"),
    Case(f"3. {JOBS:,} jobs, random job by ID", "large", script="id"),
    Case(f"4. {JOBS:,} jobs, random job by name", "large", script="name"),
    Case("5a. job of 20k lines, log page 1", "large", JOB + "1?limit=100"),
    Case("5b. job of 20k lines, log page 200", "large", JOB + "1?page=200&limit=100"),
    Case("6. 404 by name", "large", JOB + "no-such-job"),
]


def milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str,
    token: str,
    seconds: int,
    script: str = "",
    connections: int = 6,
    jobs: int = JOBS,
) -> Run:
    """Run wrk; with a script ("id" or "name"), random jobs 1..jobs."""
    command = [*WRK, "--connections", str(connections), "--duration", f"{seconds}s"]
    command += ["--header", f"Authorization: Bearer {token}"]
    if script:
        command += ["--script", str(HERE / "wrk" / "jobs.lua")]
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_JOBS": str(jobs), "BENCH_BY": script}
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, env=env
    ).stdout
    if "Socket errors" in out:
        raise SystemExit(f"wrk saw socket errors:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
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


def database(server_url: str, name: str) -> str:
    """Create the database if missing and return its URL."""
    with closing(psycopg2.connect(server_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
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
    return urls


def worker_rss_kib(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def memory(url: str, token: str, run_dir: Path) -> tuple[int, int, int]:
    """Worker RSS after about 1,000 and after MEMORY_REQUESTS requests, one worker, no recycling."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ZDM_JWT_SECRET": SECRET,
        "GUNICORN_WORKERS": "1",
        "GUNICORN_MAX_REQUESTS": "0",
        "GUNICORN_ACCESS_LOG": "/dev/null",
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "gunicorn.log", "wb") as log:
        process = spawn_gunicorn(env, 18099, run_dir, log, SERVICE_APP)
    try:
        base = "http://127.0.0.1:18099/"
        done = wrk(base, token, 2, "id", connections=4).requests
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
    urls = prepare(start_sized(postgres))
    token = make_token(SECRET, "bench", 24 * 3600)
    servers: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"demo": 18001, "large": 18002}
    try:
        for key, port in ports.items():
            env = {
                **os.environ,
                "DATABASE_URL": urls[key],
                "ZDM_JWT_SECRET": SECRET,
                "GUNICORN_ACCESS_LOG": "/dev/null",
            }
            run_dir = folder / f"run-{key}"
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "gunicorn.log", "wb") as log:
                servers[key] = spawn_gunicorn(env, port, run_dir, log, SERVICE_APP)
        results: dict[str, list[Run]] = {c.name: [] for c in CASES}
        cpu: dict[str, list[dict[str, float]]] = {c.name: [] for c in CASES}
        postmaster = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
        for case in CASES:  # warm-up: caches, pools, the token cache
            wrk(f"http://127.0.0.1:{ports[case.port_key]}{case.path}", token, 2, case.script)
        for round_ in range(ROUNDS):
            print(f"round {round_ + 1}/{ROUNDS}")
            for case in CASES:
                url = f"http://127.0.0.1:{ports[case.port_key]}{case.path or '/'}"
                result, spent = measured(
                    lambda u=url, c=case: wrk(u, token, SECONDS, c.script),
                    lambda k=case.port_key: {
                        "gunicorn": tree(servers[k].pid),
                        "PostgreSQL": tree(postmaster),
                    },
                )
                results[case.name].append(result)
                cpu[case.name].append({k: v / result.requests * 1e6 for k, v in spent.items()})
        for server in servers.values():
            server.terminate()
            server.wait(timeout=30)
        servers.clear()
        rss = memory(urls["large"], token, folder / "run-memory")
    finally:
        for server in servers.values():
            server.terminate()
        postgres.stop()
    report(results, cpu, rss)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def report(
    results: dict[str, list[Run]],
    cpu: dict[str, list[dict[str, float]]],
    rss: tuple[int, int, int],
) -> None:
    names = [c.name for c in CASES]
    ceiling = median(results[names[0]], "rps")
    layers = list(cpu[names[0]][0])
    rows = [
        "| case | req/s | p50 ms | p99 ms | vs ceiling | non-2xx | "
        + " | ".join(f"{layer} CPU us" for layer in layers)
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(layers),
    ]
    for name in names:
        runs = results[name]
        spent = [statistics.median(r[layer] for r in cpu[name]) for layer in layers]
        rows.append(
            f"| {name} | {median(runs, 'rps'):,.0f} | {median(runs, 'p50_ms'):.2f} | "
            f"{median(runs, 'p99_ms'):.2f} | {median(runs, 'rps') / ceiling:.2f} | "
            f"{sum(r.errors for r in runs)} | " + " | ".join(f"{us:,.0f}" for us in spent) + " |"
        )

    def ratio(a: str, b: str, field: str = "rps", other: str = "") -> tuple[float, list[float]]:
        """The ratio of the medians, and the same ratio within each round (the spread)."""
        other = other or field
        pairs = zip(results[a], results[b], strict=True)
        rounds = [getattr(x, field) / getattr(y, other) for x, y in pairs]
        return median(results[a], field) / median(results[b], other), rounds

    large, small = names[2], names[1]
    checks = [
        ("demo endpoint / ceiling (req/s)", ratio(small, names[0]), ">= 0.5"),
        ("large / small (req/s, case 3 / case 2)", ratio(large, small), ">= 0.8"),
        ("case 3 p99 / p50", ratio(large, large, "p99_ms", "p50_ms"), "<= 3"),
        (
            "deep page / page 1 (p50 latency, 5b / 5a)",
            ratio(names[5], names[4], "p50_ms"),
            "<= 1.2",
        ),
        ("page 1 / deep page (req/s, 5a / 5b)", ratio(names[4], names[5]), "<= 1.2"),
    ]
    first, last, done = rss
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench` on {machine()}.",
        f"Data: demo set; generated {JOBS:,} jobs x {LINES} log lines over {SERVERS:,} servers, "
        f"job 1 with {DEEP_LINES:,} lines. PostgreSQL 16, shared_buffers {SHARED_BUFFERS}. "
        "gunicorn: config/gunicorn.conf.py defaults "
        f"({2 * (os.cpu_count() or 1) + 1} gthread workers x 2 threads). wrk: 2 threads, "
        "6 connections (where throughput peaks here: 8 or 16 give fewer requests per second "
        "and only add queueing to latency), "
        f"{SECONDS} s per run, medians of {ROUNDS} rounds "
        "(one round runs every case in turn), all on this machine. CPU us: the CPU time each "
        "group of processes spent per request during the run (gunicorn: master and workers; "
        "PostgreSQL: postmaster and backends; wrk: the load generator).",
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
        f"Worker RSS (one worker, no recycling): {first / 1024:.1f} MiB after ~1,000 requests, "
        f"{last / 1024:.1f} MiB after {done:,} ({(last - first) / first * 100:+.1f}%).",
        "",
    ]
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
