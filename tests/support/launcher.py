"""`zdm-dev serve` and its siblings started as a user starts them, and what they print.

The installed commands: the workshop's, zdm-dev, and the operator's, zdm-monitor.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.processes import clean_env, descendants, http_get, kill_leftovers, wait_until
from zdm_devstack.postgres import EmbeddedPostgres

BIN_DIR = Path(sys.executable).parent
LAUNCHER = BIN_DIR / "zdm-dev"
OPERATOR = BIN_DIR / "zdm-monitor"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass
class Launcher:
    """One `zdm-dev serve` process and what it printed."""

    data_dir: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    gunicorn_pids: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"zdm-dev serve exited early:\n{self.output()}")
            try:
                status, body = http_get(f"{self.base}/healthz")
            except (OSError, ValueError):
                return False
            return status == 200 and body["success"] is True

        if not wait_until(healthy, START_TIMEOUT, 0.2):
            pytest.fail(f"/healthz did not answer within {START_TIMEOUT} s:\n{self.output()}")
        self.gunicorn_pids = descendants(self.process.pid)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the launcher; return its exit status."""
        self.gunicorn_pids = descendants(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"zdm-dev serve still running {STOP_TIMEOUT} s after SIGINT")

    def clean_up(self) -> None:
        """Clean up after a failure: only the processes this launcher started."""
        kill_leftovers([self.process], {*descendants(self.process.pid), *self.gunicorn_pids})
        EmbeddedPostgres(self.data_dir / "postgres").stop()


def launch(command: str, data_dir: Path, port: int, log_path: Path) -> Launcher:
    """Start `zdm-dev <command>` on a data folder and PORT, from log_path's folder."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(LAUNCHER), command],
            env=clean_env(ZDM_DATA_DIR=str(data_dir), PORT=str(port)),
            cwd=log_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Launcher(data_dir, port, log_path, process)


def cli_token(data_dir: Path) -> str:
    result = subprocess.run(
        [str(LAUNCHER), "token"],
        env=clean_env(ZDM_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return result.stdout.strip()
