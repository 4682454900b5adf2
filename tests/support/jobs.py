"""JobSnapshot values for the pure tests: the demo's daily-backup and bulk-data, varied."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from zdm_monitor.data.repository import JobSnapshot

START = datetime(2025, 1, 15, 2, 0, 0, tzinfo=UTC)


def at(**delta: float) -> datetime:
    return START + timedelta(**delta)


def snapshot(**changes: Any) -> JobSnapshot:
    base = JobSnapshot(
        has_definition=True,
        has_runtime=True,
        mismatched=[],
        name="daily-backup",
        server_name="linux-server-01",
        os="linux",
        partition="/",
        drive=None,
        status="complete",
        percent=100,
        message="Backup completed successfully",
        started_at=START,
        ended_at=at(minutes=30),
        last_report_at=at(minutes=30),
        log_total=3,
        log_lines=["Starting backup...", "Processing files...", "Backup completed"],
        server_id=1,
        mode="full",
        repository_type="nfs",
        repository_path="/backup/linux-server-01",
        log_first=1,
        log_last=3,
        first_line=1,
        log_times=None,
        job_id=1,
        version=100,
        on_replica=False,
    )
    return replace(base, **changes)


def bulk(numbers: range, log_first: int | None = 1, log_last: int | None = 250) -> JobSnapshot:
    """bulk-data's snapshot returning the given lines of a log holding log_first..log_last."""
    return snapshot(
        log_lines=[f"line {n}" for n in numbers],
        first_line=numbers.start if numbers else None,
        log_first=log_first,
        log_last=log_last,
        log_total=0 if log_last is None or log_first is None else log_last - log_first + 1,
    )
