"""Pure functions from repository rows to the contract's payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .repository import JobSnapshot

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
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


def monitoring_payload(
    job: JobSnapshot, zone: ZoneInfo, *, descending: bool = False, stalled: bool | None = None
) -> dict[str, Any]:
    """Build the Linux (partition) or Windows (drive) payload of a complete job.

    stalled is given for detail=true, which adds fields and never changes the others.
    """
    info: dict[str, Any] = {"name": job.name}
    if job.os == "windows":
        info["drive"] = job.drive
    else:
        info["partition"] = job.partition
    progress: dict[str, Any] = {
        "status": job.status,
        "percent": f"{job.percent}%",
        "message": job.message or NONE,
        "start": format_time(job.started_at, zone),
        "elapsed": format_elapsed(job.started_at, job.ended_at, job.last_report_at),
        "end": format_time(job.ended_at, zone),
    }
    system: dict[str, Any] = {"name": job.server_name}
    log = job.log_lines[::-1] if descending else job.log_lines
    payload = {"system": system, "job": {"info": info, "progressInfo": progress, "log": log}}
    if stalled is not None:
        system.update(id=job.server_id, os=job.os)
        info.update(id=job.job_id, mode=job.mode)
        progress.update(lastReport=format_time(job.last_report_at, zone), stalled=stalled)
        payload["job"].update(
            repository=None
            if job.repository_type is None
            else {"type": job.repository_type, "path": job.repository_path},
            logEntries=log_entries(job, zone, descending),
        )
    return payload


def log_entries(job: JobSnapshot, zone: ZoneInfo, descending: bool) -> list[dict[str, Any]]:
    """Number and time each returned line; lines are consecutive from first_line."""
    first = job.first_line or 0
    times = job.log_times or []
    entries = [
        {"line": first + i, "time": format_time(moment, zone), "message": message}
        for i, (moment, message) in enumerate(zip(times, job.log_lines, strict=True))
    ]
    return entries[::-1] if descending else entries


def pagination(page: int | None, limit: int, total: int) -> dict[str, int]:
    """Describe the log's pages the way flask-smorest's X-Pagination header does.

    page is None for a cursor (after=) request, which asked for no page.
    """
    if total == 0:
        return {"total": 0, "total_pages": 0}
    last = (total - 1) // limit + 1
    meta = {"total": total, "total_pages": last, "first_page": 1, "last_page": last}
    if page is not None and page <= last:
        meta["page"] = page
        if page > 1:
            meta["previous_page"] = page - 1
        if page < last:
            meta["next_page"] = page + 1
    return meta
