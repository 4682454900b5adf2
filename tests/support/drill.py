"""Fault drills: steady load on gunicorn while PostgreSQL stops, or while a worker is killed;
then, in make run's shape and make serve-nginx's, the bad days of support/faults.py.

    make drill                      # 60 s of load, PostgreSQL down for 10 s, a worker kill,
                                    # then 15 s each of a frozen PostgreSQL, a killed backend
                                    # and the odd requests in both shapes, and through nginx
                                    # held sockets, pipelined unfinished requests, held
                                    # connections asked to close, 2,500 half-sent heads and
                                    # overlong unfinished heads
    python tests/support/drill.py --seconds 12 --outage 4     # a short run (the tests: 9 s, 3 s)

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

# Run as a script (make drill), tests/ must be on the path for the support package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.api import JOB_URL, SECRET, bearer
from support.faults import (
    closing_requests,
    fault_stack,
    frozen_database,
    half_sent_heads,
    held_sockets,
    killed_backend,
    odd_requests,
    overlong_heads,
    pipelined_requests,
)
from support.processes import free_port
from zdm_devstack.stack import Stack

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


class Client:
    """One keep-alive connection on loopback that reconnects after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str, headers: dict[str, str]) -> int | str:
        """Return the answer's status, or the name of the error that stood in for one."""
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            return type(exc).__name__
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status

    def close(self) -> None:
        self.conn.close()


def load(port: int, seconds: float, threads: int, tally: Tally) -> list[threading.Thread]:
    """Start threads that loop GET requests until the time is up."""
    deadline = time.monotonic() + seconds
    headers = bearer()
    paths = [f"{JOB_URL}1", f"{JOB_URL}daily-backup-win", f"{JOB_URL}bulk-data?page=3"]

    def run(n: int) -> None:
        client = Client(port)
        i = n
        while time.monotonic() < deadline:
            i += 1
            outcome = client.get(paths[i % len(paths)], headers)
            if isinstance(outcome, int):
                tally.add(outcome, None)
            else:
                tally.add(None, outcome)
        client.close()

    started = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)]
    for thread in started:
        thread.start()
    return started


def start_stack(data_dir: Path, **extra: str) -> Stack:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDM_", "GUNICORN_"))}
    env.pop("DATABASE_URL", None)
    env.update(ZDM_JWT_SECRET=SECRET, GUNICORN_ACCESS_LOG="/dev/null", **extra)
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
    replaced = before[0] not in after and len(after) == len(before)
    failed = sum(tally.errors.values()) + sum(
        n for status, n in tally.statuses.items() if status != 200
    )
    return {
        "sent": tally.sent,
        "200": tally.statuses[200],
        "failed": failed,
        "in flight at most": threads,
        "workers before/after": f"{len(before)}/{len(after)}",
        "replaced": replaced,
        "ok": failed <= threads and replaced,
    }


# The soak's mix: (path, with a valid token, expected status).
MIX = [
    (f"{JOB_URL}1", True, 200),
    (f"{JOB_URL}daily-backup-win", True, 200),
    (f"{JOB_URL}bulk-data?page=7&limit=30", True, 200),
    (f"{JOB_URL}%EC%9D%BC%EC%9D%BC-%EB%B0%B1%EC%97%85?status=ERROR", True, 200),
    (f"{JOB_URL}no-such-job", True, 404),
    (f"{JOB_URL}987654321", True, 404),
    (f"{JOB_URL}1?mode=smart", True, 404),
    (f"{JOB_URL}6", True, 400),
    (f"{JOB_URL}1?page=0", True, 400),
    (f"{JOB_URL}1?mode=full&mode=smart", True, 400),
    (f"{JOB_URL}a%00b", True, 400),
    (f"{JOB_URL}1", False, 401),
    ("/no/such/route", True, 404),
]


def worker_rss_kib(stack: Stack) -> int:
    assert stack.gunicorn is not None
    pid = stack.gunicorn.pid
    total = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        status = Path(f"/proc/{child}/status").read_text()
        total += int(status.split("VmRSS:")[1].split()[0])
    return total


def soak(stack: Stack, requests: int, threads: int, warmup: int = 30_000) -> dict[str, object]:
    """Send the mixed workload; every answer must be the expected one, memory must stay flat.

    Memory settles in a warm-up (measured here: the workers grow by about 10 % once, somewhere in
    their first 15,000-40,000 requests, then by under 1 % per 90,000), so flatness is judged
    on the second half of the run: a leak would grow there as much as in the first.
    """
    per_thread = requests // threads
    wrong: Counter[str] = Counter()
    done = Counter[str]()
    lock = threading.Lock()

    def run(n: int) -> None:
        client = Client(stack.port)
        good, bad = bearer(), {"Authorization": "Bearer not.a.token"}
        for i in range(per_thread):
            path, token, expected = MIX[(n + i) % len(MIX)]
            outcome = str(client.get(path, good if token else bad))
            with lock:
                done[outcome] += 1
                if outcome != str(expected):
                    wrong[f"{path} -> {outcome}"] += 1
        client.close()

    def batch(count: int) -> None:
        nonlocal per_thread
        per_thread = count // threads
        started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()

    batch(warmup)
    warm = worker_rss_kib(stack)
    batch(requests // 2)
    mid = worker_rss_kib(stack)
    batch(requests - requests // 2)
    end = worker_rss_kib(stack)
    server_errors = sum(n for outcome, n in done.items() if outcome.startswith("5"))
    return {
        "requests (warm-up included)": sum(done.values()),
        "answers": dict(done),
        "unexpected": dict(wrong),
        "5xx": server_errors,
        "worker RSS KiB warm/mid/end": f"{warm}/{mid}/{end}",
        "growth %, second half": round((end - mid) / mid * 100, 2),
        # A leak grows with every request; a settling step happens once. Judge the trend.
        "ok": server_errors == 0 and not wrong and end <= mid * 1.02,
    }


def bad_days(nginx: bool, seconds: float) -> list[dict[str, object]]:
    """The fault drills of support/faults.py against one shape, each for `seconds`: the
    clients' drills through nginx only (they are nginx's to absorb), the database's in both."""
    folder = Path(mkdtemp(prefix="zdm-faults-"))
    with open(folder / "stack.log", "wb") as log:
        stack = fault_stack(folder, nginx, log)
    base = f"http://127.0.0.1:{stack.port}"
    assert stack.postgres is not None
    try:
        results: list[dict[str, object]] = []
        if nginx:
            results += [
                {
                    "drill": "40 idle + 40 slowloris sockets",
                    **held_sockets(base, stack.port, seconds),
                },
                {
                    "drill": "12 unfinished requests pipelined behind whole ones",
                    **pipelined_requests(base, stack.port, seconds),
                },
                {
                    "drill": "10 held connections asked to close",
                    **closing_requests(base, stack.port, seconds),
                },
                {"drill": "2,500 half-sent heads", **half_sent_heads(base, stack.port, seconds)},
                {"drill": "6 unfinished 830 KB heads", **overlong_heads(base, stack.port, seconds)},
            ]
        results += [
            {"drill": "a backend SIGKILLed", **killed_backend(base, stack.env["DATABASE_URL"], 9)},
            {"drill": "PostgreSQL frozen", **frozen_database(base, stack.postgres.pgdata, seconds)},
        ]
        answers = odd_requests(stack.port)
        statuses = {name: int(a.split(b" ", 2)[1]) if a else 0 for name, a in answers.items()}
        # gunicorn alone answers what it refuses with a page of its own: the development shape.
        json_only = all(b"application/json" in a.split(b"\r\n\r\n")[0] for a in answers.values())
        results.append(
            {
                "drill": "odd requests",
                "statuses": statuses,
                "ok": (json_only or not nginx) and all(400 <= s < 500 for s in statuses.values()),
            }
        )
        return results
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--outage", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--bad-day", type=float, default=15, help="seconds of each fault drill")
    parser.add_argument(
        "--soak", type=int, default=0, help="run only the soak: this many requests after warm-up"
    )
    args = parser.parse_args()
    if args.soak:
        # No worker recycling: memory growth must show, not be reset.
        stack = start_stack(Path(mkdtemp(prefix="zdm-soak-")), GUNICORN_MAX_REQUESTS="0")
        try:
            result = soak(stack, args.soak, args.threads)
            print("soak:", result)
        finally:
            stack.stop()
        return 0 if result["ok"] else 1
    stack = start_stack(Path(mkdtemp(prefix="zdm-drill-")))
    try:
        outage = database_outage(stack, args.seconds, args.outage, args.threads)
        print("PostgreSQL outage drill:", outage, flush=True)
        kill = worker_kill(stack, min(args.seconds, 20), args.threads)
        print("worker SIGKILL drill:", kill, flush=True)
    finally:
        stack.stop()
    ok = bool(outage["ok"] and kill["ok"])
    for shape, nginx in (("make run", False), ("make serve-nginx", True)):
        for result in bad_days(nginx, args.bad_day):
            print(f"{shape}: {result}", flush=True)
            ok = ok and bool(result["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
