"""zdm-dev demo-agent: the demo moves while it runs, and is back as shipped when it stops."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import JOB_URL, add_job, bearer
from support.launcher import LAUNCHER, Launcher, launch
from support.processes import clean_env, free_port, kill_leftovers, wait_until

from zdm_devstack.agent import (
    BURST_EVERY,
    KEEP_LINES,
    MOVING_MARK,
    RESTART_AFTER,
    Agent,
    MovingMark,
    NotTheDemo,
    restore_left_demo,
)
from zdm_devstack.cli import main
from zdm_devstack.demo import prepare_database
from zdm_devstack.postgres import EmbeddedPostgres

SHIPPED_PERCENT = 45  # job 4, bulk-data, in sql/demo.sql
AGENT_EXIT_S = 30
RUNNING = (2, 4)  # the demo's processing jobs: daily-backup-win, bulk-data
SLACK_S = 5  # what elapsed may gain between the agent's start and the test's look

DUMP = """
SELECT json_build_array(
  (SELECT json_agg(s ORDER BY id) FROM server s),
  (SELECT json_agg(b ORDER BY id) FROM backup b),
  (SELECT json_agg(i ORDER BY backup_id) FROM backup_info i),
  (SELECT json_agg(l ORDER BY backup_id, line) FROM backup_log l))::text
"""


def dump(db: connection) -> str:
    with db.cursor() as cur:
        cur.execute(DUMP)
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def job(db: connection, job_id: int) -> tuple[str, int, int, int]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT i.status, i.percent, min(l.line), max(l.line) FROM backup_info i"
            " LEFT JOIN backup_log l ON l.backup_id = i.backup_id WHERE i.backup_id = %s"
            " GROUP BY i.status, i.percent",
            (job_id,),
        )
        row = cur.fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


def test_running_jobs_advance_and_log_and_the_demo_comes_back(db: connection) -> None:
    shipped = dump(db)
    agent = Agent(db, seed=1)
    before = job(db, 4)
    agent.tick()
    status, percent, _, last = job(db, 4)
    assert status == "processing" and before[1] < percent <= before[1] + 4
    assert last == before[3] + 1
    assert job(db, 2)[1] > 60  # the Windows job moves too
    assert job(db, 1) == ("complete", 100, 1, 3)  # a finished job stays as it is
    agent.restore()
    assert dump(db) == shipped


def seconds(elapsed: str) -> int:
    hours, minutes, rest = (int(part) for part in elapsed.split(":"))
    return hours * 3600 + minutes * 60 + rest


def running_job(client: FlaskClient, job_id: int) -> tuple[dict[str, Any], list[str]]:
    """The job's progressInfo (detail=true) and the times of its whole log, from the API."""
    progress: dict[str, Any] = {}
    times: list[str] = []
    page, pages = 1, 1
    while page <= pages:
        answer = client.get(
            f"{JOB_URL}{job_id}?detail=true&limit=100&page={page}", headers=bearer()
        )
        assert answer.status_code == 200, answer.get_json()
        job = answer.get_json()["data"]["job"]
        progress = progress or job["progressInfo"]
        times = [entry["time"] for entry in job["logEntries"]] + times
        pages = json.loads(answer.headers["X-Pagination"])["total_pages"]
        page += 1
    return progress, times


def shipped_elapsed(client: FlaskClient) -> dict[int, int]:
    """Each running job's elapsed seconds in the demo as shipped, long stalled there."""
    shipped = {}
    for job_id in RUNNING:
        progress, _ = running_job(client, job_id)
        assert progress["status"] == "processing" and progress["stalled"] is True
        shipped[job_id] = seconds(progress["elapsed"])
    return shipped


def assert_live(client: FlaskClient, shipped: dict[int, int]) -> None:
    """Each running job's elapsed is as shipped plus a few seconds, it is not stalled, and its
    log runs from its start to its last report."""
    for job_id, elapsed in shipped.items():
        progress, times = running_job(client, job_id)
        assert progress["status"] == "processing", progress
        assert elapsed <= seconds(progress["elapsed"]) <= elapsed + SLACK_S, (job_id, progress)
        assert progress["stalled"] is False, progress
        assert times == sorted(times), times
        assert progress["start"] <= times[0] <= times[-1] <= progress["lastReport"], (
            progress,
            times[0],
            times[-1],
        )


def test_running_jobs_start_when_the_agent_starts(client: FlaskClient, db: connection) -> None:
    shipped = dump(db)
    elapsed = shipped_elapsed(client)
    assert elapsed == {2: 20 * 60, 4: 41 * 60 + 40}
    agent = Agent(db, seed=4)
    agent.start()
    assert_live(client, elapsed)
    for _ in range(3):
        agent.tick()
    assert_live(client, elapsed)
    agent.restore()
    assert dump(db) == shipped


def test_a_burst_prunes_lines_a_cursor_has_not_seen(client: FlaskClient, db: connection) -> None:
    agent = Agent(db, seed=2)
    for _ in range(BURST_EVERY - 1):
        agent.tick()
    cursor = job(db, 4)[3]
    tag = client.get(f"{JOB_URL}4?after={cursor}", headers=bearer()).headers["ETag"]
    agent.tick()  # the burst: more lines than the job keeps
    _, _, first, last = job(db, 4)
    assert last - first + 1 == KEEP_LINES and first > cursor + 1
    answer = client.get(f"{JOB_URL}4?after={cursor}", headers={**bearer(), "If-None-Match": tag})
    assert answer.status_code == 200
    assert answer.headers["X-Log-Gap"] == "true"
    agent.restore()


def test_a_finished_job_starts_a_new_run(db: connection) -> None:
    with db.cursor() as cur:
        cur.execute("UPDATE backup_info SET percent = 99 WHERE backup_id = 4")
    agent = Agent(db, seed=3)
    agent.tick()
    assert job(db, 4)[:2] == ("complete", 100)
    for _ in range(RESTART_AFTER):
        agent.tick()
    assert job(db, 4)[:2] == ("processing", 0)


def test_it_touches_nothing_but_the_demo(db: connection) -> None:
    add_job(db, 40, "a-real-job")
    with pytest.raises(NotTheDemo):
        Agent(db)


def test_the_command_runs_rounds_and_puts_the_demo_back(database_url: str, db: connection) -> None:
    shipped = dump(db)
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(
        main, ["demo-agent", "--rounds", "2", "--interval", "0.1"]
    )
    assert result.exit_code == 0, result.output
    assert "job 4:" in result.output and "the demo data is back as shipped" in result.output
    assert dump(db) == shipped
    json.loads(shipped)  # the dump is the whole data set


def test_the_command_refuses_another_data_set(database_url: str, db: connection) -> None:
    add_job(db, 41, "another-real-job")
    before = dump(db)
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(main, ["demo-agent"])
    assert result.exit_code == 1 and "demo data set" in result.output
    assert dump(db) == before


def test_the_mark_puts_back_the_demo_of_its_own_database_only(
    database_url: str, db: connection, tmp_path: Path
) -> None:
    shipped = dump(db)
    with db.cursor() as cur:
        cur.execute("UPDATE backup_info SET percent = 99 WHERE backup_id = 4")
    mark = MovingMark(tmp_path, database_url)
    MovingMark(tmp_path, None).set()  # the data folder's embedded database's, not this one's
    assert not restore_left_demo(db, mark)
    assert job(db, 4)[1] == 99 and (tmp_path / MOVING_MARK).read_text() == "embedded\n"
    mark.set()
    assert "DATABASE_URL " in (tmp_path / MOVING_MARK).read_text()
    assert "postgres" not in (tmp_path / MOVING_MARK).read_text()  # a digest, not the URL
    assert restore_left_demo(db, mark)
    assert dump(db) == shipped
    assert not (tmp_path / MOVING_MARK).exists()
    assert not restore_left_demo(db, mark)  # once

    add_job(db, 42, "loaded-since")  # no longer the demo: left as it is
    mark.set()
    assert not restore_left_demo(db, mark)
    assert "loaded-since" in dump(db) and not (tmp_path / MOVING_MARK).exists()


def dump_of(url: str) -> str:
    with closing(psycopg2.connect(url)) as conn:
        return dump(conn)


def percent_of(url: str, job_id: int) -> int:
    with closing(psycopg2.connect(url)) as conn:
        return job(conn, job_id)[1]


def start_agent(data_dir: Path, log_path: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """`make demo-agent` on the data folder of `make run`, its output in log_path."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(LAUNCHER), "demo-agent", *args],
            env=clean_env(ZDM_DATA_DIR=str(data_dir), **env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def move_then_lose_the_database(postgres: EmbeddedPostgres, data_dir: Path, log: Path) -> str:
    """A demo-agent moves the demo for a few rounds, then its PostgreSQL stops under it (Ctrl-C
    on `make run` first); return what the agent printed once it exited."""
    url = postgres.url()
    agent = start_agent(data_dir, log, "--interval", "0.1")
    try:
        assert wait_until(lambda: percent_of(url, 4) >= SHIPPED_PERCENT + 8, 30), log.read_text()
        postgres.stop()
        status = agent.wait(timeout=AGENT_EXIT_S)
    finally:
        kill_leftovers([agent])
    output = log.read_text()
    assert status == 1, output
    return output


@pytest.mark.slow
def test_the_command_s_demo_reads_as_live_and_comes_back_as_shipped(
    client: FlaskClient, database_url: str, db: connection, tmp_path: Path
) -> None:
    shipped = dump(db)
    elapsed = shipped_elapsed(client)
    log = tmp_path / "agent.log"
    agent = start_agent(tmp_path, log, "--interval", "0.5", DATABASE_URL=database_url)
    try:
        assert wait_until(lambda: "  job 4: " in log.read_text(), AGENT_EXIT_S), log.read_text()
        assert_live(client, elapsed)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=AGENT_EXIT_S) == 0, log.read_text()
    finally:
        kill_leftovers([agent])
    assert (
        log.read_text().splitlines()[-1] == "demo-agent: stopped; the demo data is back as shipped."
    )
    assert dump(db) == shipped


@pytest.mark.slow
def test_a_database_gone_under_the_agent_is_one_line_and_the_next_start_restores_the_demo(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    postgres = EmbeddedPostgres(data_dir / "postgres")
    launcher: Launcher | None = None
    try:
        prepare_database(postgres.start())  # what `make run` does first on a new data folder
        shipped = dump_of(postgres.url())

        output = move_then_lose_the_database(postgres, data_dir, tmp_path / "agent-1.log")
        assert "Traceback" not in output
        last = output.splitlines()[-1]
        assert [line for line in output.splitlines() if "Error" in line] == [last]
        assert re.fullmatch(
            r"Error: the database went away \((server closed the connection unexpectedly"
            r"|terminating connection due to administrator command)\): the demo data is left"
            r" moved; the next"
            r" `make run` or `make demo-agent` on .+ puts it back as shipped\.",
            last,
        ), last
        postgres.start()
        assert dump_of(postgres.url()) != shipped
        assert (data_dir / MOVING_MARK).read_text() == "embedded\n"

        # The next `make demo-agent` puts the demo back before it moves it.
        again = tmp_path / "agent-2.log"
        agent = start_agent(data_dir, again, "--rounds", "1", "--interval", "0.1")
        assert agent.wait(timeout=AGENT_EXIT_S) == 0, again.read_text()
        lines = again.read_text().splitlines()
        assert (
            lines[0] == "demo-agent: the last demo-agent left the demo moved: put back as shipped."
        )
        first_round = next(line for line in lines if line.startswith("  job 4: "))
        assert SHIPPED_PERCENT < int(first_round.split()[2].rstrip("%,")) <= SHIPPED_PERCENT + 4
        assert dump_of(postgres.url()) == shipped

        # Lost again; then `make run` (its PostgreSQL stopped too) puts it back.
        move_then_lose_the_database(postgres, data_dir, tmp_path / "agent-3.log")
        launcher = launch("serve", data_dir, free_port(), tmp_path / "serve.log")
        launcher.wait_healthy()
        assert dump_of(postgres.url()) == shipped
        assert launcher.interrupt() == 0
        launcher = None
        banner = (tmp_path / "serve.log").read_text()
        assert "Demo data put back as shipped: a demo-agent had left it moved." in banner
        assert not (data_dir / MOVING_MARK).exists()
    finally:
        if launcher is not None:
            launcher.clean_up()
        postgres.stop()
