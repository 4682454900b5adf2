"""Polling: the validator, the log cursor, the pace, the stall mark, the headers and the 304.

decide() (decide_server() for the server view) answers all the view asks about a poll.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Generic, TypeVar

from flask import Response
from werkzeug.datastructures import ETags

from ..config import Settings
from ..data.repository import JobSnapshot, ServerSnapshot, ServerSummary
from .payloads import pagination
from .schemas import MonitoringQuery, ServerQuery

# What a poller reads from a 200 or a 304, besides Cache-Control: documented in the OpenAPI
# document (openapi.py) and exposed to allowed origins (cors.py) from this one list.
HEADERS = ("ETag", "X-Pagination", "X-Log-Cursor", "X-Log-Gap", "X-Poll-Interval")
# Proxies and browsers must revalidate: progress changes between polls.
CACHE_CONTROL = "private, no-cache"

ACTIVE = frozenset({"preparing", "processing", "canceling"})
WAITING = frozenset({"scheduled", "registered"})
STALL_WATCHED = frozenset({"preparing", "processing"})
Mark = TypeVar("Mark", bool | None, list[bool] | None)

# The log's lines are named by its first and last numbers (lines never change once written);
# how new the rows are stands beside the digest in the validator, and where the answer was read
# is not part of it.
UNTAGGED = ("log_lines", "log_times", "first_line", "version", "written", "on_replica")
TAGGED_FIELDS = attrgetter(*(f.name for f in fields(JobSnapshot) if f.name not in UNTAGGED))
TAGGED_SUMMARY = attrgetter(*(f.name for f in fields(ServerSummary) if f.name not in UNTAGGED))


@dataclass(frozen=True)
class Seen:
    """What a request's If-None-Match says its client holds: the contents its validators name,
    the newest version they name (inf for one not of this service: how new is unknown)."""

    digests: frozenset[str]
    newest: float
    star: bool

    def holds(self, digest: str) -> bool:
        """Whether the client has this content, whatever version its validator named."""
        return self.star or digest in self.digests

    def newer_than(self, snapshot: JobSnapshot | ServerSnapshot, after: int | None) -> bool:
        """Whether the client has seen a newer answer than the snapshot: a validator of a newer
        version, or a log cursor past the snapshot's newest line."""
        if self.newest > snapshot.version:
            return True
        return isinstance(snapshot, JobSnapshot) and (after or 0) > (snapshot.log_last or 0)


def seen(if_none_match: ETags) -> Seen:
    """Read the validators the client sent: W/"<version>.<digest>", as validator() makes them."""
    digests, versions = set(), [-1.0]
    for tag in if_none_match.as_set(include_weak=True) - {None}:  # None: an empty one, ""
        version, _, digest = tag.partition(".")
        digests.add(digest)
        versions.append(int(version) if version.isdecimal() else math.inf)
    return Seen(frozenset(digests), max(versions), if_none_match.star_tag)


def validator(version: int, digest: str) -> str:
    """How new the answer's rows are, then a digest of its content: the same on every worker."""
    return f"{version}.{digest}"


@dataclass(frozen=True)
class Poll(Generic[Mark]):
    """What the view needs to know about a poll."""

    headers: dict[str, str]
    stalled: Mark  # with detail=true: the job's stall mark, or each job's on the page
    current: bool  # the client's copy is this answer: 304


def decide(
    job: JobSnapshot, query: MonitoringQuery, settings: Settings, client: Seen, memo: dict[Any, Any]
) -> Poll[bool | None]:
    """The headers of the answer, its stall mark, and whether the client's copy is current; the
    headers depend on the snapshot, the query and the mark only, so the memo keeps them."""
    stalled = is_stalled(job, datetime.now(UTC), settings.stall_seconds) if query.detail else None
    key = (query, stalled)
    made = memo.get(key)
    if made is None:
        made = memo[key] = polling_headers(job, query, settings, stalled)
    digest, headers = made
    return Poll(headers, stalled, client.holds(digest))


def polling_headers(
    job: JobSnapshot, query: MonitoringQuery, settings: Settings, stalled: bool | None
) -> tuple[str, dict[str, str]]:
    """The digest of the answer's content (the job's halves, its log's ends, the query, the zone,
    the stall mark) and its headers."""
    cursor, gap = log_cursor(job, query.after)
    # With after, the tag names where the answer leaves the client (its X-Log-Cursor), not where
    # it started: the poll after a batch of new lines, finding nothing newer, is a 304.
    tagged = query if query.after is None else replace(query, after=cursor)
    content = digest((TAGGED_FIELDS(job), tagged, settings.timezone.key, stalled))
    headers = base_headers(validator(job.version, content), log_pages(job, query))
    headers["X-Log-Cursor"] = str(cursor)
    if gap:
        headers["X-Log-Gap"] = "true"
    interval = poll_interval(
        job.status, settings.poll_active_seconds, settings.poll_waiting_seconds
    )
    if interval is not None:
        headers["X-Poll-Interval"] = str(interval)
    return content, headers


def decide_server(
    server: ServerSnapshot, query: ServerQuery, settings: Settings, client: Seen
) -> Poll[list[bool] | None]:
    """The server view's headers, as the job endpoint makes them, over the page's jobs: one
    validator for the whole answer, and the shortest of their poll intervals."""
    now, stall = datetime.now(UTC), settings.stall_seconds
    stalled = [is_stalled(job, now, stall) for job in server.jobs] if query.detail else None
    jobs = [TAGGED_FIELDS(job) for job in server.jobs]
    content = digest((TAGGED_SUMMARY(server.summary), jobs, query, settings.timezone.key, stalled))
    pages = pagination(query.page, query.limit, server.summary.total)
    headers = base_headers(validator(server.version, content), pages)
    paces = (settings.poll_active_seconds, settings.poll_waiting_seconds)
    intervals = [i for job in server.jobs if (i := poll_interval(job.status, *paces)) is not None]
    if intervals:
        headers["X-Poll-Interval"] = str(min(intervals))
    return Poll(headers, stalled, client.holds(content))


def not_modified(headers: dict[str, str]) -> Response:
    """A 304: the client's copy is current; no body is built or sent. X-Log-Gap stays with the
    200 that delivered the lines after the gap."""
    response = Response(status=304, headers=headers)
    del response.headers["Content-Type"]
    response.headers.pop("X-Log-Gap", None)
    return response


def digest(state: Any) -> str:
    """A hash of everything an answer's content depends on."""
    return hashlib.blake2b(repr(state).encode(), digest_size=12).hexdigest()


def base_headers(tag: str, pages: dict[str, int]) -> dict[str, str]:
    """What every 200 and 304 of both views carries."""
    return {"ETag": f'W/"{tag}"', "Cache-Control": CACHE_CONTROL, "X-Pagination": json.dumps(pages)}


def log_pages(job: JobSnapshot, query: MonitoringQuery) -> dict[str, int]:
    """X-Pagination: the pages that `page` counts, the log's back from its newest line, or with
    after the lines after the cursor that the log still holds."""
    if query.after is None:
        return pagination(query.page, query.limit, job.log_total)
    start = query.after if job.log_first is None else max(query.after, job.log_first - 1)
    return pagination(query.page, query.limit, max(0, (job.log_last or 0) - start))


def log_cursor(job: JobSnapshot, after: int | None) -> tuple[int, bool]:
    """Return (X-Log-Cursor, X-Log-Gap) for the returned lines, as openapi.RESPONSE_HEADERS
    describes them; after itself when the log is empty or behind it (a replica's)."""
    gap = after is not None and job.log_first is not None and job.log_first > after + 1
    if job.log_lines and job.first_line is not None:
        return job.first_line + len(job.log_lines) - 1, gap
    if after is not None:
        return max(after, job.log_last or 0), gap
    return (0 if job.log_first is None else job.log_first - 1), False


def is_stalled(job: JobSnapshot, now: datetime, stall_seconds: int) -> bool:
    """A preparing or processing job that has reported nothing for stall_seconds."""
    if job.status not in STALL_WATCHED:
        return False
    last = job.last_report_at or job.started_at
    return last is not None and (now - last).total_seconds() > stall_seconds


def poll_interval(status: str | None, active: int, waiting: int) -> int | None:
    """Seconds until the next useful poll; None once the job can change no more."""
    if status in ACTIVE:
        return active
    if status in WAITING:
        return waiting
    return None
