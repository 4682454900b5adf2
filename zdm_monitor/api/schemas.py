"""The query string: parsed strictly, validated and normalised by marshmallow schemas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import marshmallow as ma
from flask import Request
from marshmallow import Schema, ValidationError, post_load, pre_load
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict

from ..data.repository import JobFilters
from .fields import Bounded, Choice, Drive, Flag, Partition, Text
from .messages import Message, say

MODES = ("full", "increment", "smart")
STATUSES = (
    "preparing",
    "processing",
    "complete",
    "scheduled",
    "registered",
    "canceling",
    "canceled",
    "error",
)
REPOSITORY_TYPES = ("smb", "nfs")
MAX_PATH_LENGTH = 4096
MAX_PAGE = 100_000
DEFAULT_LIMIT = 20
MAX_LINE = 2**31 - 1  # backup_log.line is an integer
PARSED_QUERIES = 1024


def doc(description: str, example: Any, **more: Any) -> dict[str, Any]:
    """A query field's metadata for the OpenAPI document: what it means and a value to try."""
    return {"description": description, "example": example, **more}


@dataclass(frozen=True)
class MonitoringQuery:
    filters: JobFilters
    page: int
    limit: int
    after: int | None
    sort: str
    detail: bool


class FilterSchema(ma.Schema):
    """The job filters, one definition for both endpoints: each applies to a job."""

    class Meta:
        unknown = ma.EXCLUDE
        ordered = True

    mode = Choice(MODES, metadata=doc("Job mode filter.", "full"))
    partition = Partition(
        max_length=MAX_PATH_LENGTH,
        metadata=doc(
            "Linux mount point, exact (`/`, `/var/log`); a trailing `/` other than the root is "
            "ignored.",
            "/var/log",
            pattern="^/[^\\u0000\\uFFFD]*$",
        ),
    )
    drive = Drive(
        metadata=doc(
            "Windows drive: `C`, `c`, `C:`, `c:` and `C:\\` all mean `C:`.",
            "C:",
            pattern="^[A-Za-z](:\\\\?)?$",
        )
    )
    server = Text(
        metadata=doc("Server name, exact, or server ID when all digits.", "linux-server-01")
    )
    repositoryType = Choice(
        REPOSITORY_TYPES,
        aliases={"cifs": "smb"},
        metadata=doc("Repository type; `cifs` means `smb`.", "nfs"),
    )
    repositoryPath = Text(
        max_length=MAX_PATH_LENGTH,
        metadata=doc("Repository path, exact.", "/backup/linux-server-01"),
    )
    status = Choice(
        STATUSES,
        aliases={"run": "processing", "running": "processing"},
        metadata=doc("Job status filter; `run` and `running` mean `processing`.", "processing"),
    )
    jobName = Text(metadata=doc("Job name, exact.", "daily-backup"))

    @pre_load
    def single_values(self, data: Any, **kwargs: Any) -> dict[str, str]:
        """Drop empty values (forms send them); refuse a parameter given twice, or as a list or
        an object (`partition[]=/`, `partition[0]=/`, as jQuery and qs write them)."""
        getlist = getattr(data, "getlist", None)
        found: dict[str, str] = {}
        refused: dict[str, list[Message]] = {}
        keys = list(self.fields)  # the parameters' names, in order
        for key in keys:
            values = getlist(key) if getlist else [data[key]] if key in data else []
            values = [v for v in values if v != ""]
            if len(values) > 1:
                refused[key] = [say("given_twice")]
            elif values:
                found[key] = values[0]
        for key in data:
            name = key.partition("[")[0]
            if name != key and name in keys:
                refused[name] = [say("given_as_list")]
        if refused:
            raise ValidationError(refused)
        return found

    @staticmethod
    def filters(data: dict[str, Any]) -> JobFilters:
        server: str | None = data.get("server")
        by_id = server is not None and server.isascii() and server.isdigit()
        return JobFilters(
            mode=data.get("mode"),
            partition=data.get("partition"),
            drive=data.get("drive"),
            server_id=int(server) if by_id and server else None,
            server_name=None if by_id else server,
            repository_type=data.get("repositoryType"),
            repository_path=data.get("repositoryPath"),
            status=data.get("status"),
            job_name=data.get("jobName"),
        )


DETAIL_DESCRIPTION = (
    "`true` (or `1`) adds system.id, system.os, job.info.id, job.info.mode, job.repository, "
    "progressInfo.lastReport, progressInfo.stalled and job.logEntries; `false` (or `0`) does not."
)


class MonitoringQuerySchema(FilterSchema):
    """Query parameters of the monitoring endpoint."""

    page = Bounded(
        MAX_PAGE,
        load_default=1,
        metadata=doc(
            "Log page of `limit` lines: page 1 holds the newest, page 2 the ones before. With "
            "`after`, the pages after the cursor instead: page 1 the first `limit` lines after "
            "it, page 2 the next.",
            2,
        ),
    )
    limit = Bounded(1000, load_default=DEFAULT_LIMIT, metadata=doc("Log lines per page.", 50))
    after = Bounded(
        MAX_LINE,
        minimum=0,
        metadata=doc(
            "Log cursor: the lines after this line number, oldest first, at most `limit` of them "
            "(`0`: from the start); with `page`, that page of them. Answered with `X-Log-Cursor`, "
            "and `X-Log-Gap: true` when lines after it were pruned.",
            248,
        ),
    )
    sort = Choice(
        ("asc", "desc"),
        load_default="asc",
        metadata=doc("Order of the returned log lines: `asc` (oldest first) or `desc`.", "desc"),
    )
    detail = Flag(load_default=False, metadata=doc(DETAIL_DESCRIPTION, "true"))

    @post_load
    def to_query(self, data: dict[str, Any], **kwargs: Any) -> MonitoringQuery:
        return MonitoringQuery(
            filters=self.filters(data),
            page=data["page"],
            limit=data["limit"],
            after=data.get("after"),
            sort=data["sort"],
            detail=data["detail"],
        )


@dataclass(frozen=True)
class ServerQuery:
    filters: JobFilters
    page: int
    limit: int
    paged: bool  # page or limit was given: the body carries pagination
    log_limit: int
    detail: bool


class ServerQuerySchema(FilterSchema):
    """Query parameters of the server view: the job filters, pages of jobs, lines per job."""

    page = Bounded(
        MAX_PAGE, metadata=doc("Page of the server's jobs, in job ID order.", 1, default=1)
    )
    limit = Bounded(100, metadata=doc("Jobs per page.", 12, default=DEFAULT_LIMIT))
    logLimit = Bounded(
        100,
        minimum=0,
        load_default=10,
        metadata=doc("How many of each job's newest log lines, oldest first.", 5),
    )
    detail = Flag(
        load_default=False, metadata=doc(DETAIL_DESCRIPTION.replace("job.", "each job's "), "true")
    )

    @post_load
    def to_query(self, data: dict[str, Any], **kwargs: Any) -> ServerQuery:
        return ServerQuery(
            filters=self.filters(data),
            page=data.get("page", 1),
            limit=data.get("limit", DEFAULT_LIMIT),
            paged="page" in data or "limit" in data,
            log_limit=data["logLimit"],
            detail=data["detail"],
        )


class QueryParser(FlaskParser):
    """Decode the query string strictly as UTF-8: an undecodable escape such as %FF, which
    Werkzeug keeps as the text "%FF", becomes U+FFFD, which the schema refuses by name."""

    def __init__(self) -> None:
        super().__init__()
        self._parsed: dict[tuple[Any, ...], Any] = {}

    def load_querystring(self, req: Request, schema: Schema) -> MultiDict[str, str]:
        raw = quote(req.query_string, safe="&=%+")
        return MultiDict(parse_qsl(raw, keep_blank_values=True, errors="replace"))

    def parse(self, argmap: Any, req: Request | None = None, **kwargs: Any) -> Any:
        """Validate each distinct query string once: a dashboard repeats its own on every poll.
        Only valid ones are kept (their results are immutable), and all are dropped when full,
        so unique query strings cannot grow the memo without bound."""
        request = req or self.get_default_request()
        key = (id(argmap), request.query_string, tuple(sorted(kwargs.items())))
        result = self._parsed.get(key)
        if result is None:
            result = super().parse(argmap, request, **kwargs)
            if len(self._parsed) >= PARSED_QUERIES:
                self._parsed.clear()
            self._parsed[key] = result
        return result
