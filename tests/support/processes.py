"""Helpers for the end-to-end tests: free ports, environments, processes, waiting and HTTP."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair() -> int:
    """A port p with p and p + 1 both free: nginx listens on p, gunicorn on p + 1."""
    return free_ports(2)


def free_ports(count: int) -> int:
    """A port p with p, p + 1, ... p + count - 1 all free.

    All lie below the kernel's ephemeral range: a connect() to a dead port inside that range
    can, now and then, pick the same port as its source and connect to itself (TCP
    simultaneous open), which would turn "gunicorn is gone" into a hanging upstream.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(max(1025, low - 12000), low - count))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with ExitStack() as stack:
            try:
                for offset in range(count):
                    sock = stack.enter_context(
                        closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    )
                    sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no {count} consecutive free ports below the ephemeral range")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any zdm-monitor or gunicorn setting, plus the given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZDM_", "GUNICORN_"))
        and k not in ("DATABASE_URL", "PORT", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for a parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children() -> dict[int, list[int]]:
    """Every process's direct children, found through /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def children_of(pid: int) -> list[int]:
    """Direct children of pid."""
    return _children().get(pid, [])


def descendants(pid: int) -> list[int]:
    """All processes below pid."""
    children = _children()
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_leftovers(processes: Iterable[subprocess.Popen[Any]], pids: Iterable[int] = ()) -> None:
    """After a failure, SIGKILL what still runs of the given pids and processes; reap those."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Stop a server gracefully (SIGTERM), or kill it when it has not exited within timeout."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_leftovers([process])


def wait_until(check: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Call check until it returns something true or timeout seconds pass; its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def http_get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET url, with a bearer token if given: the status and the JSON body."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among text's lines; other lines are skipped."""
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
