"""Fault drills: steady load on gunicorn while PostgreSQL stops, or while a worker is killed.

    make drill                      # 60 s of load, PostgreSQL down for 10 s, then a worker kill
    python tests/drill.py --seconds 12 --outage 4     # the short version the tests run

Load is a bounded set of threads on loopback, each looping requests on keep-alive
connections for a fixed time. Exit status 1 when a target is missed: any 5xx other than 503,
any connection error (outage drill), recovery slower than 2 s, or more failed requests than
were in flight when the worker died.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import JOB_URL, SECRET, bearer
from processes import free_port

from zdm_monitor.stack import Stack

RECOVERY_TARGET_S = 2.0


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ok_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int | None, error: str | None) -> None:
        with self.lock:
            if status is not None:
                self.statuses[status] += 1
                if status == 200:
                    self.ok_times.append(time.monotonic())
            else:
                self.errors[error or "?"] += 1

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())


def load(port: int, seconds: float, threads: int, tally: Tally) -> list[threading.Thread]:
    """Start threads that loop GET requests until the time is up."""
    deadline = time.monotonic() + seconds
    headers = bearer()
    paths = [f"{JOB_URL}1", f"{JOB_URL}daily-backup-win", f"{JOB_URL}bulk-data?page=3"]

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = n
        while time.monotonic() < deadline:
            i += 1
            try:
                conn.request("GET", paths[i % len(paths)], headers=headers)
                response = conn.getresponse()
                response.read()
                tally.add(response.status, None)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                tally.add(None, type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    started = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
    for thread in started:
        thread.start()
    return started


def start_stack(data_dir: Path) -> Stack:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDM_", "GUNICORN_"))}
    env.pop("DATABASE_URL", None)
    env.update(ZDM_JWT_SECRET=SECRET, GUNICORN_ACCESS_LOG="/dev/null")
    # The children keep their own copy of the file; this process's handle can close.
    with open(data_dir / "stack.log", "wb") as log:
        stack = Stack(data_dir, free_port(), workers=3, env=env, output=log)
        stack.start()
    return stack


def database_outage(stack: Stack, seconds: float, outage: float, threads: int) -> dict[str, object]:
    """Stop PostgreSQL a third of the way in for `outage` seconds, under steady load."""
    assert stack.postgres is not None
    tally = Tally()
    workers = load(stack.port, seconds, threads, tally)
    time.sleep(seconds / 3)
    stack.postgres.stop()
    time.sleep(outage)
    stack.postgres.start()
    back = time.monotonic()
    for worker in workers:
        worker.join()
    after = [t for t in tally.ok_times if t >= back]
    recovery = (min(after) - back) if after else float("inf")
    bad = sum(n for status, n in tally.statuses.items() if status >= 500 and status != 503)
    return {
        "sent": tally.sent,
        "200": tally.statuses[200],
        "503": tally.statuses[503],
        "other": {s: n for s, n in tally.statuses.items() if s not in (200, 503)},
        "connection errors": dict(tally.errors),
        "recovery s": round(recovery, 3),
        "ok": bad == 0 and not tally.errors and recovery < RECOVERY_TARGET_S,
    }


def worker_kill(stack: Stack, seconds: float, threads: int) -> dict[str, object]:
    """SIGKILL one gunicorn worker halfway through; the master must replace it."""
    assert stack.gunicorn is not None
    tally = Tally()
    workers = load(stack.port, seconds, threads, tally)
    time.sleep(seconds / 2)
    children = Path(f"/proc/{stack.gunicorn.pid}/task/{stack.gunicorn.pid}/children")
    before = children.read_text().split()
    os.kill(int(before[0]), signal.SIGKILL)
    for worker in workers:
        worker.join()
    after = children.read_text().split()
    failed = sum(tally.errors.values()) + sum(
        n for status, n in tally.statuses.items() if status != 200
    )
    return {
        "sent": tally.sent,
        "200": tally.statuses[200],
        "failed": failed,
        "in flight at most": threads,
        "workers before/after": f"{len(before)}/{len(after)}",
        "replaced": before[0] not in after and len(after) == len(before),
        "ok": failed <= threads and len(after) == len(before) and before[0] not in after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--outage", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    stack = start_stack(Path(mkdtemp(prefix="zdm-drill-")))
    try:
        outage = database_outage(stack, args.seconds, args.outage, args.threads)
        print("PostgreSQL outage drill:", outage)
        kill = worker_kill(stack, min(args.seconds, 20), args.threads)
        print("worker SIGKILL drill:", kill)
    finally:
        stack.stop()
    return 0 if outage["ok"] and kill["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
