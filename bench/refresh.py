"""The database's load while 20 job keys are polled, and how soon it stops after the last poll.

.venv/bin/python bench/refresh.py

The demo database and the packaged gunicorn settings, as `make run` starts them (zdm-dev serve:
an embedded PostgreSQL, 2 x cores + 1 workers, a max age of 1 s). Four clients poll the 20 keys
(jobs 1-5, limits 1-4) with their validators, a new connection each request so that every worker
is asked, for BENCH_SECONDS (20). Printed: the service's committed transactions per second
(pg_stat_database.xact_commit of its database) beside workers x keys / max age; then, from
pg_stat_activity, each of the service's statements ended after the last poll, by when; and the
transactions committed during the 10 s after a pause that lets idle backends report theirs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2

from zdm_devstack.stack import SERVICE_ROLE, Stack
from zdm_monitor.ops.cli import make_token

SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
KEYS = [
    f"/api/backups/monitoring/job/{job}?limit={limit}"
    for job in range(1, 6)
    for limit in (1, 2, 3, 4)
]
MAX_AGE_S = 1.0
# A backend reports its counts when idle at most every 10 s (PostgreSQL 16).
STATS_PAUSE_S = 11


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, open(os.devnull, "wb") as quiet:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDM_", "GUNICORN_"))}
        stack = Stack(Path(folder), port, env=env, output=quiet)
        stack.start()
        try:
            measure(stack, f"http://127.0.0.1:{port}")
        finally:
            stack.stop()
            stack.release_data_folder()


def measure(stack: Stack, base: str) -> None:
    token = make_token(stack.env["ZDM_JWT_SECRET"], "bench", 3600)
    owner = stack.env["DATABASE_URL"]
    database = psycopg2.extensions.parse_dsn(owner)["dbname"]
    tags: dict[str, str] = {}
    polling = threading.Event()
    polling.set()
    answers: list[int] = []

    def poll() -> None:
        while polling.is_set():
            for key in KEYS:
                headers = {"Authorization": f"Bearer {token}"}
                if key in tags:
                    headers["If-None-Match"] = tags[key]
                try:
                    with urllib.request.urlopen(
                        urllib.request.Request(base + key, headers=headers)
                    ) as r:
                        tags[key] = r.headers["ETag"]
                        answers.append(r.status)
                except urllib.error.HTTPError as exc:
                    answers.append(exc.code)

    with closing(psycopg2.connect(owner, dbname="postgres")) as conn:
        conn.autocommit = True
        cur = conn.cursor()

        def one(statement: str, *args: Any) -> Any:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(statement, args)
            return cur.fetchone()[0]  # type: ignore[index]

        def committed() -> int:
            return int(one("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", database))

        clients = [threading.Thread(target=poll) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(3)  # every worker has read every key
        before, started = committed(), time.monotonic()
        asked = len(answers)
        time.sleep(SECONDS)
        after, seconds = committed(), time.monotonic() - started
        requests = len(answers) - asked
        polling.clear()
        for client in clients:
            client.join()
        stopped = one("SELECT clock_timestamp()")
        seen: dict[int, Any] = {}
        ends = []
        deadline = time.monotonic() + 4 * MAX_AGE_S
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT pid, state_change FROM pg_stat_activity"
                " WHERE usename = %s AND state = 'idle'",
                (SERVICE_ROLE,),
            )
            for pid, change in cur.fetchall():
                if change > stopped and seen.get(pid) != change:
                    seen[pid] = change
                    ends.append((change - stopped).total_seconds())
            time.sleep(0.02)
        time.sleep(STATS_PAUSE_S)
        quiet_from = committed()
        time.sleep(10)
        quiet = committed() - quiet_from
    assert stack.gunicorn is not None
    pgrep = subprocess.run(["pgrep", "-P", str(stack.gunicorn.pid)], capture_output=True, text=True)
    workers = len(pgrep.stdout.split())
    rate = (after - before) / seconds
    bound = workers * len(KEYS) / MAX_AGE_S
    print(f"gunicorn workers: {workers}; keys: {len(KEYS)}; polled for {seconds:.1f} s")
    print(f"requests/s: {requests / seconds:.0f}; answers: {sorted(set(answers))}")
    print(f"service transactions/s: {rate:.1f}")
    print(f"workers x keys / max age: {bound:.0f}; with the lead (/ 0.95): {bound / 0.95:.1f}")
    print(f"statements ended after the last poll: {len(ends)}", end="")
    print(f", the last {max(ends, default=0):.3f} s after it (two max ages: {2 * MAX_AGE_S} s)")
    print(f"transactions in 10 s from {STATS_PAUSE_S} s after the last poll: {quiet}")


if __name__ == "__main__":
    main()
