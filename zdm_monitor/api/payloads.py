"""Pure functions from repository rows to the contract's payloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..data.repository import JobSnapshot, ServerSnapshot
from ..data.timestamps import CYCLE_YEARS, Beyond, duration

NONE = "-"
SECOND = timedelta(seconds=1)


def format_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """Return the instant as wall time in the zone (YYYY-MM-DD HH:MM:SS), or '-'; a year outside
    1-9999 as it is (20000-01-01 00:00:00, 0044-03-15 00:00:00 BC), infinities as words."""
    if moment is None:
        return NONE
    if isinstance(moment, Beyond):
        if moment.near is None:
            return "infinity" if moment.future else "-infinity"
        return wall_time(moment.near, zone, moment.cycles)
    return wall_time(moment, zone)


def wall_time(moment: datetime, zone: ZoneInfo, cycles: int = 0) -> str:
    """The wall time in the zone of moment + cycles * 400 years."""
    try:
        local = moment.astimezone(zone)
    except OverflowError:
        # Within a day of year 1 or 9999 the zone's wall time can leave datetime's years: a
        # cycle inwards, the calendar and the zone's rules are the same.
        inward = 1 if moment.year < 5000 else -1
        local = moment.replace(year=moment.year + inward * CYCLE_YEARS).astimezone(zone)
        cycles -= inward
    return clock_text(local, local.year + cycles * CYCLE_YEARS)


def clock_text(local: datetime, year: int | None = None) -> str:
    """YYYY-MM-DD HH:MM:SS of a wall time (in the given year if not its own), BC before 1."""
    year = local.year if year is None else year
    era = "" if year > 0 else " BC"  # year 0 is 1 BC
    return (
        f"{year if year > 0 else 1 - year:04d}-{local.month:02d}-{local.day:02d} "
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}{era}"
    )


def format_elapsed(
    start: datetime | None, end: datetime | None, last_report: datetime | None
) -> str:
    """Return HH:MM:SS since the start, to the end once finished, else to the last report; '-'
    before the start, and from or to infinity, which is no duration."""
    if start is None:
        return NONE
    between = duration(start, end or last_report or start)
    if between is None:
        return NONE
    seconds = max(0, between // SECOND)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def monitoring_payload(
    job: JobSnapshot, zone: ZoneInfo, *, descending: bool = False, stalled: bool | None = None
) -> dict[str, Any]:
    """Build the Linux (partition) or Windows (drive) payload of a complete job; stalled is given
    for detail=true, which adds fields and never changes the others."""
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


def server_payload(
    server: ServerSnapshot,
    zone: ZoneInfo,
    *,
    paged: bool,
    page: int,
    limit: int,
    stalled: list[bool] | None,
) -> dict[str, Any]:
    """The server view: the server, the summary, each job as the job endpoint shapes it."""
    summary = server.summary
    system: dict[str, Any] = {"name": summary.system_name}
    if stalled is not None:
        system.update(id=summary.system_id, os=summary.system_os)
    marks = stalled if stalled is not None else [None] * len(server.jobs)
    data: dict[str, Any] = {
        "system": system,
        "summary": {
            "total": summary.total,
            "completed": summary.completed,
            "inProgress": summary.in_progress,
            "failed": summary.failed,
            "pending": summary.pending,
            "overallProgress": f"{mean_percent(summary.percent_sum, summary.total)}%",
            "incomplete": summary.incomplete,
        },
        "job": [
            monitoring_payload(job, zone, stalled=mark)["job"]
            for job, mark in zip(server.jobs, marks, strict=True)
        ],
    }
    if paged:
        pages = (summary.total + limit - 1) // limit
        data["pagination"] = {
            "currentPage": page,
            "totalPages": pages,
            "totalItems": summary.total,
            "itemsPerPage": limit,
            "hasNextPage": page < pages,
            "hasPreviousPage": page > 1,
        }
    return data


def mean_percent(percent_sum: int, count: int) -> int:
    """The mean, rounded half up to a whole number (0 for no job)."""
    return (2 * percent_sum + count) // (2 * count) if count else 0


def log_entries(job: JobSnapshot, zone: ZoneInfo, descending: bool) -> list[dict[str, Any]]:
    """Number and time each returned line; lines are consecutive from first_line."""
    first = job.first_line or 0
    times = job.log_times or []
    entries = [
        {"line": first + i, "time": format_time(moment, zone), "message": message}
        for i, (moment, message) in enumerate(zip(times, job.log_lines, strict=True))
    ]
    return entries[::-1] if descending else entries


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    """Describe pages of limit items the way flask-smorest's X-Pagination header does."""
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
