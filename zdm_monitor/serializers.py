"""Pure functions from repository rows to the contract's payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .envelope import TIME_FORMAT
from .repository import JobSnapshot

NONE = "-"


def format_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """Return the instant as local wall time in the zone, or '-'."""
    return NONE if moment is None else moment.astimezone(zone).strftime(TIME_FORMAT)


def format_elapsed(
    start: datetime | None, end: datetime | None, last_report: datetime | None
) -> str:
    """Return HH:MM:SS since the start: to the end once finished, else to the last report."""
    if start is None:
        return NONE
    until = end or last_report or start
    seconds = max(0, int((until - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def monitoring_payload(job: JobSnapshot, zone: ZoneInfo) -> dict[str, Any]:
    """Build the Linux (partition) or Windows (drive) payload of a complete job."""
    info: dict[str, str | None] = {"name": job.name}
    if job.os == "windows":
        info["drive"] = job.drive
    else:
        info["partition"] = job.partition
    return {
        "system": {"name": job.server_name},
        "job": {
            "info": info,
            "progressInfo": {
                "status": job.status,
                "percent": f"{job.percent}%",
                "message": job.message or NONE,
                "start": format_time(job.started_at, zone),
                "elapsed": format_elapsed(job.started_at, job.ended_at, job.last_report_at),
                "end": format_time(job.ended_at, zone),
            },
            "log": job.log_lines,
        },
    }


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    """Describe the log's pages the way flask-smorest's X-Pagination header does."""
    if total == 0:
        return {"total": 0, "total_pages": 0}
    last = (total - 1) // limit + 1
    meta = {"total": total, "total_pages": last, "first_page": 1, "last_page": last}
    if page <= last:
        meta["page"] = page
        if page > 1:
            meta["previous_page"] = page - 1
        if page < last:
            meta["next_page"] = page + 1
    return meta
