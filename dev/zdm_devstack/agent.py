"""A demo that moves: the demo data's running jobs advance and write log lines, as agents do.

When it starts, each preparing or processing job of the demo starts again at that moment,
shifted back by the elapsed time it was shipped with (its log lines with it), so that elapsed
and the stall mark read as a live system's from the first poll. Every tick each such job gains
a few percent and one log line; a job that reaches 100% completes, and starts a new run a few
ticks later. Now and then a job writes a burst of lines longer than the log keeps, and the
oldest are pruned at once, so a client polling with a cursor sees `X-Log-Gap`. It runs only
against the demo data set as shipped, and puts that set back when it stops: the README and
API.md describe it row by row.

One that cannot put it back (its database went away: `make run` stopped first) leaves a mark
in the data folder, and the next `make run` or demo-agent on that folder puts it back.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg2.extensions import connection

from .demo import DEMO_JOBS, reset_demo

KEEP_LINES = 300  # the newest lines a job keeps
BURST_EVERY = 10  # ticks
BURST_LINES = KEEP_LINES + 20  # more than a job keeps: the first lines are pruned unseen
RESTART_AFTER = 3  # ticks a finished job rests before its next run

# Each running job of the demo, its log with it, moved forward so that its last report is now:
# the elapsed time it was shipped with is kept, and ends at the agent's start.
CATCH_UP = """
WITH moved AS (
    SELECT i.backup_id AS job, now() - coalesce(i.last_report_at, i.started_at) AS shift
    FROM backup_info i JOIN backup b ON b.id = i.backup_id
    WHERE i.status IN ('preparing', 'processing') AND i.started_at IS NOT NULL
), info AS (
    UPDATE backup_info i SET started_at = i.started_at + m.shift,
        last_report_at = coalesce(i.last_report_at, i.started_at) + m.shift
    FROM moved m WHERE i.backup_id = m.job
)
UPDATE backup_log l SET logged_at = l.logged_at + m.shift FROM moved m WHERE l.backup_id = m.job
"""


# In the data folder while a demo-agent moves the demo: written before its first write, removed
# once the demo is back as shipped.
MOVING_MARK = "demo-moving"


class NotTheDemo(Exception):
    """The database holds something else than the demo data set."""


def demo_jobs(conn: connection) -> list[str]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM backup ORDER BY id")
        return [name for (name,) in cur.fetchall()]


class Agent:
    def __init__(self, conn: connection, seed: int | None = None) -> None:
        if demo_jobs(conn) != list(DEMO_JOBS):
            raise NotTheDemo("the database does not hold the demo data set: nothing written")
        self.conn = conn
        self.rng = random.Random(seed)
        self.ticks = 0
        self.resting: dict[int, int] = {}  # job -> ticks since it finished

    def start(self) -> None:
        """Move the running jobs to now, keeping the elapsed time each was shipped with."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute(CATCH_UP)

    def tick(self) -> list[str]:
        """One round of agent writes; returns what happened, a line per job."""
        self.ticks += 1
        done: list[str] = []
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "SELECT i.backup_id, i.status, i.percent FROM backup_info i"
                " JOIN backup b ON b.id = i.backup_id ORDER BY i.backup_id"
            )
            for job, status, percent in cur.fetchall():
                if status in ("preparing", "processing"):
                    done.append(self._advance(cur.execute, job, percent))
                elif status == "complete" and job in self.resting:
                    done.extend(self._rest(cur.execute, job))
        return done

    def _advance(self, execute: Callable[..., Any], job: int, percent: int) -> str:
        percent = min(100, percent + self.rng.randint(1, 4))
        burst = self.ticks % BURST_EVERY == 0 and job == 4
        lines = BURST_LINES if burst else 1
        execute(
            "INSERT INTO backup_log (backup_id, line, message)"
            " SELECT %(job)s, last.line + n, 'demo-agent: ' || %(percent)s || '%% done, step ' || n"
            " FROM (SELECT coalesce(max(line), 0) AS line FROM backup_log"
            "       WHERE backup_id = %(job)s) last, generate_series(1, %(lines)s) AS n",
            {"job": job, "percent": percent, "lines": lines},
        )
        execute(
            "DELETE FROM backup_log WHERE backup_id = %(job)s AND line <="
            " (SELECT max(line) FROM backup_log WHERE backup_id = %(job)s) - %(keep)s",
            {"job": job, "keep": KEEP_LINES},
        )
        finished = percent == 100
        execute(
            "UPDATE backup_info SET percent = %(percent)s, last_report_at = now(),"
            " message = %(message)s, status = %(status)s,"
            " ended_at = CASE WHEN %(finished)s THEN now() END WHERE backup_id = %(job)s",
            {
                "job": job,
                "percent": percent,
                "finished": finished,
                "status": "complete" if finished else "processing",
                "message": "Backup completed" if finished else f"Copying, {percent}%",
            },
        )
        if finished:
            self.resting[job] = 0
        return f"job {job}: {percent}%" + (f", {lines} lines" if burst else "")

    def _rest(self, execute: Callable[..., Any], job: int) -> list[str]:
        self.resting[job] += 1
        if self.resting[job] < RESTART_AFTER:
            return []
        del self.resting[job]
        execute(
            "UPDATE backup_info SET status = 'processing', percent = 0, started_at = now(),"
            " ended_at = NULL, last_report_at = now(), message = 'Starting a new run'"
            " WHERE backup_id = %s",
            (job,),
        )
        return [f"job {job}: a new run"]

    def restore(self) -> None:
        """Put the demo data back exactly as shipped."""
        reset_demo(self.conn)


class MovingMark:
    """The data folder's note that a demo-agent moves the demo of one database.

    It names the database as the commands reach it: the folder's embedded PostgreSQL, or a
    DATABASE_URL by its digest (no password on disk), so that only the same one is put back.
    """

    def __init__(self, folder: Path, database_url: str | None) -> None:
        self.path = folder / MOVING_MARK
        digest = database_url and hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self.database = f"DATABASE_URL {digest}" if digest else "embedded"

    def set(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.database + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def left(self) -> bool:
        """Whether a demo-agent stopped without putting this database's demo back."""
        return self.path.is_file() and self.path.read_text().strip() == self.database


def restore_left_demo(conn: connection, mark: MovingMark) -> bool:
    """Put the demo back as shipped where a demo-agent left it moved; whether it did.

    Data that is no longer the demo's (loaded since) is left alone, and so is the mark of
    another database.
    """
    if not mark.left():
        return False
    restored = demo_jobs(conn) == list(DEMO_JOBS)
    if restored:
        reset_demo(conn)
    mark.clear()
    return restored
