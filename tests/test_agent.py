"""zdm-monitor demo-agent: the demo moves while it runs, and is back as shipped when it stops."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import JOB_URL, add_job, bearer

from zdm_devstack.agent import BURST_EVERY, KEEP_LINES, RESTART_AFTER, Agent, NotTheDemo
from zdm_monitor.cli import main

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
