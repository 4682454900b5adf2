"""End to end, as a user runs it: the zdm-dev launcher and a bare gunicorn, over real HTTP."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from support.api import JOB_URL, LINUX_EXAMPLE, TIMESTAMP, WINDOWS_EXAMPLE, success_body
from support.launcher import STOP_TIMEOUT, Launcher, cli_token, launch
from support.processes import alive, clean_env, free_port, http_get, wait_until

from zdm_devstack.postgres import EmbeddedPostgres
from zdm_devstack.stack import Stack, StackError

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]

SEED_EXAMPLES = {
    "1": LINUX_EXAMPLE,
    "daily-backup": LINUX_EXAMPLE,
    "daily-backup-win": WINDOWS_EXAMPLE,
}
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@pytest.fixture
def start_launcher(tmp_path: Path) -> Iterator[Any]:
    """Start `zdm-dev serve` on a data folder; whatever is left running is stopped after."""
    started: list[Launcher] = []

    def start(data_dir: Path) -> Launcher:
        launcher = launch(
            "serve", data_dir, free_port(), tmp_path / f"serve-{len(started) + 1}.log"
        )
        started.append(launcher)
        launcher.wait_healthy()
        return launcher

    yield start
    for launcher in started:
        if launcher.process.poll() is None:
            launcher.clean_up()


def assert_seed_examples(base: str, token: str) -> None:
    for identifier, data in SEED_EXAMPLES.items():
        status, body = http_get(f"{base}{JOB_URL}{identifier}", token)
        assert status == 200, (identifier, body)
        assert REQUEST_ID.fullmatch(body.pop("requestID"))
        assert TIMESTAMP.fullmatch(body.pop("timestamp"))
        assert body == success_body(data)


def assert_stopped(launcher: Launcher) -> None:
    """Gunicorn is gone, nothing answers on the port, the embedded PostgreSQL is stopped."""
    assert launcher.gunicorn_pids, "no gunicorn process was seen under the launcher"
    gone = wait_until(lambda: not any(alive(pid) for pid in launcher.gunicorn_pids), 5)
    assert gone, [pid for pid in launcher.gunicorn_pids if alive(pid)]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", launcher.port), timeout=1).close()
    pgdata = launcher.data_dir / "postgres"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists()
    assert not EmbeddedPostgres(pgdata).running()


def count_rows(data_dir: Path) -> tuple[int, int]:
    """Jobs and log lines in the running embedded PostgreSQL."""
    url = EmbeddedPostgres(data_dir / "postgres").url()
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM backup), (SELECT count(*) FROM backup_log)")
        row = cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def folder_modes(path: Path) -> dict[Path, int]:
    """The mode of every folder above path."""
    return {folder: folder.stat().st_mode for folder in path.parents}


def test_serve_answers_the_seed_examples_and_stops_cleanly(
    tmp_path: Path, start_launcher: Any
) -> None:
    data_dir = tmp_path / "data"
    # pytest's folders are mode 700, as root's home is: nothing above the data may change.
    modes = folder_modes(data_dir)
    first: Launcher = start_launcher(data_dir)
    token = cli_token(data_dir)
    assert_seed_examples(first.base, token)
    assert http_get(f"{first.base}{JOB_URL}1")[0] == 401
    jobs_and_lines = count_rows(data_dir)
    assert jobs_and_lines == (6, 259)

    banner = first.output()
    assert "PostgreSQL: embedded" in banner
    assert banner.count("Demo data loaded.") == 1
    match = re.search(r"Bearer token[^\n]*:\n\s+(\S+)\n", banner)
    assert match, banner
    banner_token = match.group(1)
    curl = f'curl -X GET "{first.base}{JOB_URL}1"'
    assert curl in banner
    assert f'-H "Authorization: Bearer {banner_token}"' in banner
    assert_seed_examples(first.base, banner_token)
    # How to reach the embedded database, and the banner only once gunicorn listens.
    url = re.search(r"DATABASE_URL='(postgresql://[^']+)'", banner)
    assert url, banner
    assert f"psql '{url.group(1)}'" in banner
    with closing(psycopg2.connect(url.group(1))) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM backup WHERE id = 1")
        assert cur.fetchone() == ("daily-backup",)
    assert banner.index("Listening at") < banner.index("Bearer token"), banner
    assert_check_as_printed(first, url.group(1))

    assert first.interrupt() == 0, first.output()
    assert_stopped(first)
    assert "PostgreSQL stopped." in first.output()

    # A second start reuses the data folder: same data, same secret, no second demo load.
    secret = (data_dir / "dev-jwt-secret").read_text()
    second: Launcher = start_launcher(data_dir)
    assert "Demo data loaded." not in second.output()
    assert count_rows(data_dir) == jobs_and_lines
    assert (data_dir / "dev-jwt-secret").read_text() == secret
    assert_seed_examples(second.base, token)
    assert_seed_examples(second.base, banner_token)
    assert second.interrupt() == 0, second.output()
    assert_stopped(second)
    assert folder_modes(data_dir) == modes


def run_check(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A line of the banner, pasted into a shell where `zdm-dev serve` was started."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
    )


def assert_check_as_printed(launcher: Launcher, superuser_url: str) -> None:
    """The banner names the service's role beside the superuser, and its preflight line passes
    as printed, where the same with the superuser's URL fails on the role."""
    banner = launcher.output()
    service_url = superuser_url.replace("postgresql://postgres@", "postgresql://zdm_monitor@", 1)
    assert "read-only role zdm_monitor, what gunicorn reads as and `zdm-monitor check`" in banner
    assert f"    DATABASE_URL='{service_url}'\n" in banner, banner
    lines = banner.splitlines()
    check = lines[
        lines.index("  The operator's preflight, as the service reads (every line ok):") + 1
    ]
    assert check.startswith(f"    DATABASE_URL='{service_url}' ZDM_JWT_SECRET=") and check.endswith(
        "zdm-monitor check"
    ), check
    passed = run_check(check, launcher.log_path.parent)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    outcome = passed.stdout.splitlines()
    assert outcome[-1] == "zdm-monitor check: all 6 passed.", outcome
    assert all(line.startswith("ok   ") for line in outcome[:-1]), outcome
    assert "ok   role: zdm_monitor reads ZDM's 5 tables and may write none of them" in outcome
    as_superuser = run_check(check.replace(service_url, superuser_url), launcher.log_path.parent)
    assert as_superuser.returncode == 1, as_superuser.stdout + as_superuser.stderr
    failed = [line for line in as_superuser.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL role: postgres is a superuser"), failed


def wait_for_exit(launcher: Launcher, seconds: float) -> int:
    try:
        return launcher.process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        launcher.clean_up()
        pytest.fail(f"still running after {seconds} s:\n{launcher.output()}")


def test_a_second_serve_on_the_same_data_folder_refuses_and_harms_nothing(
    tmp_path: Path, start_launcher: Any
) -> None:
    data_dir = tmp_path / "data"
    first: Launcher = start_launcher(data_dir)
    token = cli_token(data_dir)
    second = launch("serve", data_dir, free_port(), tmp_path / "second.log")
    assert wait_for_exit(second, 10) == 1, second.output()
    assert f"The data folder {data_dir} is in use by another zdm-dev serve" in second.output()
    assert f"(pid {first.process.pid})" in second.output()
    assert "Traceback" not in second.output()
    # The first one's database and gunicorn are untouched: it still answers.
    assert EmbeddedPostgres(data_dir / "postgres").running()
    assert_seed_examples(first.base, token)
    assert first.interrupt() == 0, first.output()
    assert_stopped(first)


def test_serve_refuses_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        launcher = launch("serve", data_dir, port, tmp_path / "serve.log")
        assert wait_for_exit(launcher, 10) == 1, launcher.output()
    assert f"Port {port} on 127.0.0.1 is in use" in launcher.output()
    assert "Bearer token" not in launcher.output()
    assert not (data_dir / "postgres").exists()


def test_serve_refuses_a_blank_setting_before_starting_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stack = Stack(data_dir, free_port(), env=clean_env(ZDM_TIMEZONE=" ", DATABASE_URL=""))
    with pytest.raises(StackError) as refused:
        stack.start()
    assert str(refused.value).splitlines() == [
        f"{name} is set but empty: give it a value, or remove it to leave it unset."
        for name in ("DATABASE_URL", "ZDM_TIMEZONE")
    ]
    assert not data_dir.exists()


def test_production_start_refuses_without_a_token_key() -> None:
    env = clean_env(DATABASE_URL="postgresql://zdm@127.0.0.1:1/zdm")
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{free_port()}", "wsgi:app"]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith(
        "zdm-monitor: No token key: set ZDM_JWT_SECRET"
    )
    assert "Traceback" not in result.stderr


def test_serve_leaves_running_a_postgresql_it_did_not_start(
    tmp_path: Path, start_launcher: Any
) -> None:
    data_dir = tmp_path / "data"
    server = EmbeddedPostgres(data_dir / "postgres")
    server.start()
    try:
        launcher: Launcher = start_launcher(data_dir)
        assert launcher.interrupt() == 0, launcher.output()
        assert "was already running: left running." in launcher.output()
        assert server.running()
    finally:
        server.stop()


def test_a_data_folder_the_service_user_can_reach_stays_where_it_was_asked_for(
    tmp_path: Path,
) -> None:
    """Only an unreachable place sends the data under SERVICE_HOME; a new reachable one does not."""
    reachable_root = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        reachable_root.chmod(0o755)
        server = EmbeddedPostgres(reachable_root / "not" / "yet" / "there" / "postgres")
        server.start()
        try:
            assert server.pgdata == reachable_root / "not" / "yet" / "there" / "postgres"
            assert not server.pgdata.is_symlink()
        finally:
            server.stop()
    finally:
        shutil.rmtree(reachable_root)
