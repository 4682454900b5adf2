"""The packaged gunicorn settings never touch what the operator owns, and refuse a blank setting.

Each test runs a real gunicorn with `-c python:zdm_monitor.runtime.gunicorn_conf` in a working
folder that holds files of its own, and compares the folder before and after.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.api import SECRET
from support.processes import clean_env, free_port, stop, wait_until

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "gunicorn", "-c", "python:zdm_monitor.runtime.gunicorn_conf"]
APP = "zdm_monitor.runtime.wsgi:app"
# A stale file of an earlier run's worker, which prometheus_client would sum in.
STALE = "counter_4242.db"


def operator_folder(folder: Path) -> dict[str, bytes]:
    """Fill a folder as an operator's might be: files, a subfolder, a database file of theirs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "important.txt").write_text("keep\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "y").write_text("x\n")
    (folder / "notes.sqlite").write_text("not ours\n")
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() else b"/"
        for path in sorted(folder.rglob("*"))
    }


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL="postgresql://zdm@127.0.0.1:1/zdm",
        ZDM_JWT_SECRET=SECRET,
        TMPDIR=str(tmp_path / "tmp"),
        **extra,
    )


def refused(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "--bind", f"127.0.0.1:{free_port()}", APP],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("", "zdm-monitor: PROMETHEUS_MULTIPROC_DIR is set but empty: give it a value, or remove"),
        (" \t", "zdm-monitor: PROMETHEUS_MULTIPROC_DIR is set but empty"),
        ("metrics", "zdm-monitor: PROMETHEUS_MULTIPROC_DIR='metrics' is not an absolute path"),
        (".", "zdm-monitor: PROMETHEUS_MULTIPROC_DIR='.' is not an absolute path"),
    ],
    ids=["empty", "blank", "relative", "the working folder"],
)
def test_a_refused_metrics_folder_leaves_the_working_folder_as_it_was(
    tmp_path: Path, value: str, line: str
) -> None:
    work = tmp_path / "work"
    before = operator_folder(work)
    (tmp_path / "tmp").mkdir()
    result = refused(work, environment(tmp_path, PROMETHEUS_MULTIPROC_DIR=value))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith(line), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(work) == before
    assert not any((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("GUNICORN_WORKERS", "", "GUNICORN_WORKERS is set but empty"),
        ("GUNICORN_THREADS", "two", "GUNICORN_THREADS='two' is not a whole number."),
        ("GUNICORN_ACCESS_LOG", "access.log", "GUNICORN_ACCESS_LOG='access.log' is neither -"),
        ("GUNICORN_BIND", "unix:zdm.sock", "GUNICORN_BIND='unix:zdm.sock': a unix socket needs"),
        ("ZDM_TIMEZONE", " ", "ZDM_TIMEZONE is set but empty"),
        ("GUNICORN_THREADS", "1", "GUNICORN_THREADS=1 leaves no thread free for the probes"),
    ],
)
def test_each_refused_setting_is_one_line_and_touches_nothing(
    tmp_path: Path, name: str, value: str, line: str
) -> None:
    work = tmp_path / "work"
    before = operator_folder(work)
    (tmp_path / "tmp").mkdir()
    metrics = tmp_path / "metrics"
    env = environment(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics), **{name: value})
    result = refused(work, env)
    assert result.returncode != 0
    (said,) = result.stderr.splitlines()
    assert said.startswith(f"zdm-monitor: {line}"), said
    assert "Traceback" not in result.stderr
    assert snapshot(work) == before


@pytest.mark.parametrize("name", ["notes.db", "counter_old.db"])
def test_a_metrics_folder_with_a_database_file_of_someone_else_s_is_refused(
    tmp_path: Path, name: str
) -> None:
    """prometheus_client would read it as ours: /metrics would fail on it."""
    metrics = tmp_path / "metrics"
    operator_folder(metrics)
    (metrics / name).write_text("not ours\n")
    before = snapshot(metrics)
    result = refused(tmp_path, environment(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics)))
    assert result.returncode == 1
    assert result.stderr == (
        f"zdm-monitor: PROMETHEUS_MULTIPROC_DIR='{metrics}' holds {name}, not metrics files of"
        " ours: give the metrics a folder of their own.\n"
    )
    assert snapshot(metrics) == before


class Gunicorn:
    """A gunicorn with the packaged settings in a working folder, until stop()."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [*COMMAND, "--bind", f"127.0.0.1:{self.port}", "--workers", "2", APP],
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        up = wait_until(self.listening, 20)
        assert up, log.read_text()

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
            return str(answer.read().decode())

    def listening(self) -> bool:
        """Whether gunicorn accepts connections (no request: none is counted)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def healthz_count(self) -> float:
        """Requests to /healthz answered 200, summed over the workers."""
        found = re.search(
            r'zdm_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)',
            self.get("/metrics"),
        )
        return float(found.group(1)) if found else 0.0

    def stop(self) -> None:
        stop(self.process)
        assert self.process.returncode == 0


def test_an_operator_s_metrics_folder_keeps_all_but_our_files(tmp_path: Path) -> None:
    """Named: only prometheus_client's own files go, and metrics start from zero at each start."""
    work, metrics = tmp_path / "work", tmp_path / "metrics"
    before_work, before_metrics = operator_folder(work), operator_folder(metrics)
    (metrics / STALE).write_bytes(b"\0" * 16)
    (tmp_path / "tmp").mkdir()
    env = environment(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    log = tmp_path / "gunicorn.log"
    for _ in range(2):
        server = Gunicorn(work, env, log)
        try:
            assert server.healthz_count() == 0, "an earlier start's requests were summed in"
            for _ in range(3):
                server.get("/healthz")
            assert server.healthz_count() == 3
            assert not (metrics / STALE).exists()
            assert any(re.fullmatch(r"counter_\d+\.db", p.name) for p in metrics.iterdir())
        finally:
            server.stop()
        assert snapshot(work) == before_work
        left = {name: text for name, text in snapshot(metrics).items() if name in before_metrics}
        assert left == before_metrics, "a file of the operator's in the metrics folder changed"


def test_unset_the_workers_share_a_private_folder_removed_at_exit(tmp_path: Path) -> None:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    before = operator_folder(work)
    tmp.mkdir()
    server = Gunicorn(work, environment(tmp_path), tmp_path / "gunicorn.log")
    try:
        server.get("/healthz")
        (private,) = tmp.iterdir()
        assert private.name.startswith("zdm-metrics-")
        assert any(p.suffix == ".db" for p in private.iterdir())
    finally:
        server.stop()
    assert not any(tmp.iterdir()), list(tmp.rglob("*"))
    assert snapshot(work) == before


def test_each_worker_starts_its_database_side_and_the_master_starts_nothing(
    tmp_path: Path,
) -> None:
    """post_worker_init starts each worker after fork: its reads run (a database that refuses
    is the 503, not the 500 of an app never started), and gunicorn's master, which imports the
    app, runs no thread of it."""
    work = tmp_path / "work"
    work.mkdir()
    server = Gunicorn(work, environment(tmp_path), tmp_path / "gunicorn.log")
    try:
        for _ in range(4):  # a connection each: both workers, most likely
            with pytest.raises(urllib.error.HTTPError) as refused:
                server.get("/readyz")
            assert refused.value.code == 503
            assert json.loads(refused.value.read())["code"] == "SERVICE-UNAVAILABLE"
        master = Path(f"/proc/{server.process.pid}/task")
        assert [task.name for task in master.iterdir()] == [str(server.process.pid)]
    finally:
        server.stop()


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_files_named_get_gunicorn_s_own_lines_as_json(tmp_path: Path) -> None:
    """GUNICORN_ERROR_LOG and GUNICORN_ACCESS_LOG, when they name files, are where gunicorn's
    lines go, one JSON object each; the access log holds only what gunicorn answered itself."""
    work, errors, access = tmp_path / "work", tmp_path / "error.log", tmp_path / "access.log"
    work.mkdir()
    env = environment(tmp_path, GUNICORN_ERROR_LOG=str(errors), GUNICORN_ACCESS_LOG=str(access))
    output = tmp_path / "gunicorn.log"
    server = Gunicorn(work, env, output)
    try:
        server.get("/healthz")  # the app's to log, on stderr
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            # gunicorn's own 400, which it logs
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
            raw.recv(4096)
        assert wait_until(lambda: access.exists() and access.read_text(), 5)
    finally:
        server.stop()
    messages = [line["message"] for line in json_lines(errors)]
    assert any(m.startswith("Booting worker") for m in messages), messages
    (line,) = json_lines(access)
    assert (line["logger"], line["status"]) == ("gunicorn.access", 400)
    said = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["route"] for r in said if r["logger"] == "zdm_monitor.request"] == ["/healthz"]
    assert not [r for r in said if r["logger"].startswith("gunicorn.")]
