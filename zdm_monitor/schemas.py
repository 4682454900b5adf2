"""Marshmallow schemas: the query string (validated and normalised) and the documented bodies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, pre_load

from .repository import JobFilters

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
MAX_NAME_LENGTH = 255
MAX_PATH_LENGTH = 4096
MAX_PAGE = 100_000
MAX_LIMIT = 1000
DEFAULT_LIMIT = 20
MAX_LINE = 2**31 - 1  # backup_log.line is an integer
SORT_ORDERS = ("asc", "desc")
DRIVE_PATTERN = re.compile(r"([A-Za-z])(:\\?)?")

# The documented form of check_text: no NUL, no U+FFFD (what undecodable bytes become).
TEXT_PATTERN = "^[^\\u0000\\uFFFD]*$"
BAD_TEXT = "NUL 문자나 잘못된 UTF-8을 포함할 수 없습니다."
GIVEN_TWICE = "한 번만 지정할 수 있습니다."
AFTER_WITH_PAGE = "page와 함께 지정할 수 없습니다."


def check_text(value: str, max_length: int) -> str:
    """Refuse text the database cannot hold or the client did not mean."""
    if "\x00" in value or "\ufffd" in value:
        raise ValidationError(BAD_TEXT)
    if len(value) > max_length:
        raise ValidationError(f"최대 {max_length}자까지 지정할 수 있습니다.")
    return value


class Text(fields.String):
    """A string with a length bound and no NUL or undecodable bytes."""

    def __init__(self, max_length: int = MAX_NAME_LENGTH, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(maxLength=max_length)
        kwargs["metadata"].setdefault("pattern", TEXT_PATTERN)
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return check_text(super()._deserialize(value, attr, data, **kwargs), self.max_length)


class Choice(fields.String):
    """One of a fixed set of lower-case names; case-insensitive, with aliases."""

    def __init__(
        self, choices: tuple[str, ...], aliases: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        names = ", ".join(choices)
        kwargs.setdefault("metadata", {})["enum"] = list(choices)
        super().__init__(**kwargs)
        self.choices = choices
        self.aliases = dict(aliases or {})
        self.reason = f"{names} 중 하나여야 합니다."

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs).strip().lower()
        name = self.aliases.get(name, name)
        if name not in self.choices:
            raise ValidationError(self.reason)
        return name


class Bounded(fields.Integer):
    """A whole number in ASCII digits within [minimum, maximum]."""

    def __init__(self, maximum: int, minimum: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(minimum=minimum, maximum=maximum)
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum
        self.reason = f"{minimum}부터 {maximum}까지의 정수여야 합니다."

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        text = str(value)
        # The length check keeps int() away from huge digit strings.
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(self.maximum))):
            raise ValidationError(self.reason)
        number = int(text)
        if not self.minimum <= number <= self.maximum:
            raise ValidationError(self.reason)
        return number


class Flag(Choice):
    """true or false, case-insensitive; 1 and 0 too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(("true", "false"), aliases={"1": "true", "0": "false"}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        return super()._deserialize(value, attr, data, **kwargs) == "true"

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        """Write the documented default as the query string spells it."""
        return None if value is None else "true" if value else "false"


class Partition(Text):
    """A Linux mount point; a trailing slash other than the root is ignored."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        path = super()._deserialize(value, attr, data, **kwargs)
        if not path.startswith("/"):
            raise ValidationError("/ 또는 /var/log 처럼 /로 시작하는 마운트 경로여야 합니다.")
        return path.rstrip("/") or "/"


class Drive(fields.String):
    """A Windows drive letter: C, c, C: and c: all mean C:."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        match = DRIVE_PATTERN.fullmatch(super()._deserialize(value, attr, data, **kwargs))
        if match is None:
            raise ValidationError("C, c, C: 처럼 드라이브 문자 하나여야 합니다.")
        return f"{match.group(1).upper()}:"


@dataclass(frozen=True)
class MonitoringQuery:
    filters: JobFilters
    page: int
    limit: int
    after: int | None
    sort: str
    detail: bool


class MonitoringQuerySchema(ma.Schema):
    """Query parameters of the monitoring endpoint."""

    class Meta:
        unknown = ma.EXCLUDE
        ordered = True

    mode = Choice(MODES, metadata={"description": "Job mode filter; case-insensitive."})
    partition = Partition(
        max_length=MAX_PATH_LENGTH,
        metadata={
            "pattern": "^/[^\\u0000\\uFFFD]*$",
            "description": "Linux mount point, exact (`/`, `/var/log`); trailing `/` ignored.",
        },
    )
    drive = Drive(
        metadata={
            "description": "Windows drive; `C`, `c`, `C:` and `c:` all mean `C:`.",
            "pattern": "^[A-Za-z](:\\\\?)?$",
        }
    )
    server = Text(metadata={"description": "Server name, or server ID when all digits."})
    repositoryType = Choice(
        REPOSITORY_TYPES,
        aliases={"cifs": "smb"},
        data_key="repositoryType",
        metadata={"description": "Repository type; case-insensitive; `cifs` means `smb`."},
    )
    repositoryPath = Text(
        max_length=MAX_PATH_LENGTH,
        data_key="repositoryPath",
        metadata={"description": "Repository path, exact."},
    )
    status = Choice(
        STATUSES,
        aliases={"run": "processing", "running": "processing"},
        metadata={
            "description": "Job status filter; case-insensitive; `run` and `running` mean "
            "`processing`."
        },
    )
    jobName = Text(data_key="jobName", metadata={"description": "Job name, exact."})
    page = Bounded(
        MAX_PAGE,
        load_default=1,
        metadata={"description": "Log page; page 1 holds the newest `limit` lines."},
    )
    limit = Bounded(
        MAX_LIMIT,
        load_default=DEFAULT_LIMIT,
        metadata={"description": "Log lines per page."},
    )
    after = Bounded(
        MAX_LINE,
        minimum=0,
        metadata={
            "description": "Log cursor: the lines after this line number, oldest first, at most "
            "`limit` of them, instead of a page (`0`: from the start). Not with `page`. "
            "Answered with `X-Log-Cursor`, and `X-Log-Gap: true` when lines after it were pruned."
        },
    )
    sort = Choice(
        SORT_ORDERS,
        load_default="asc",
        metadata={
            "description": "Order of the returned log lines: `asc` (oldest first) or `desc`."
        },
    )
    detail = Flag(
        load_default=False,
        metadata={
            "description": "`true` adds system.id, system.os, job.info.id, job.info.mode, "
            "job.repository, progressInfo.lastReport, progressInfo.stalled and job.logEntries."
        },
    )

    @pre_load
    def single_values(self, data: Any, **kwargs: Any) -> dict[str, str]:
        """Drop empty values (dashboard forms send them) and refuse a parameter given twice."""
        getlist = getattr(data, "getlist", None)
        found: dict[str, str] = {}
        twice: dict[str, list[str]] = {}
        for field in self.fields.values():
            key = field.data_key or field.name
            assert key is not None
            values = getlist(key) if getlist else [data[key]] if key in data else []
            values = [v for v in values if v != ""]
            if len(values) > 1:
                twice[key] = [GIVEN_TWICE]
            elif values:
                found[key] = values[0]
        if twice:
            raise ValidationError(twice)
        if "after" in found and "page" in found:
            raise ValidationError({"after": [AFTER_WITH_PAGE]})
        return found

    @post_load
    def to_query(self, data: dict[str, Any], **kwargs: Any) -> MonitoringQuery:
        server: str | None = data.get("server")
        by_id = server is not None and server.isascii() and server.isdigit()
        filters = JobFilters(
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
        return MonitoringQuery(
            filters=filters,
            page=data["page"],
            limit=data["limit"],
            after=data.get("after"),
            sort=data["sort"],
            detail=data["detail"],
        )


# Documentation only: the bodies below are built by serializers.py and envelope.py.


DETAIL = "With detail=true only."


class JobInfoSchema(ma.Schema):
    name = fields.String(required=True)
    partition = fields.String(metadata={"description": "Linux jobs only."})
    drive = fields.String(metadata={"description": "Windows jobs only."})
    id = fields.Integer(metadata={"description": DETAIL})
    mode = fields.String(metadata={"enum": list(MODES), "description": DETAIL})


class ProgressInfoSchema(ma.Schema):
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    percent = fields.String(required=True, metadata={"example": "60%"})
    message = fields.String(required=True, metadata={"description": "`-` when none."})
    start = fields.String(required=True, metadata={"example": "2025-01-15 02:00:00"})
    elapsed = fields.String(required=True, metadata={"example": "00:20:00"})
    end = fields.String(required=True, metadata={"description": "`-` while not finished."})
    lastReport = fields.String(metadata={"description": f"Last progress report; `-`. {DETAIL}"})
    stalled = fields.Boolean(
        metadata={
            "description": "Preparing or processing with no report for ZDM_STALL_SECONDS. " + DETAIL
        }
    )


class RepositorySchema(ma.Schema):
    type = fields.String(required=True, metadata={"enum": list(REPOSITORY_TYPES)})
    path = fields.String(required=True)


class LogEntrySchema(ma.Schema):
    line = fields.Integer(required=True, metadata={"description": "1, 2, 3... within the job."})
    time = fields.String(required=True)
    message = fields.String(required=True)


class JobSchema(ma.Schema):
    info = fields.Nested(JobInfoSchema, required=True)
    progressInfo = fields.Nested(ProgressInfoSchema, required=True)
    log = fields.List(fields.String(), required=True)
    repository = fields.Nested(RepositorySchema, allow_none=True, metadata={"description": DETAIL})
    logEntries = fields.List(
        fields.Nested(LogEntrySchema), metadata={"description": "The lines of `log`. " + DETAIL}
    )


class SystemSchema(ma.Schema):
    name = fields.String(required=True)
    id = fields.Integer(metadata={"description": DETAIL})
    os = fields.String(metadata={"enum": ["linux", "windows"], "description": DETAIL})


class MonitoringDataSchema(ma.Schema):
    system = fields.Nested(SystemSchema, required=True)
    job = fields.Nested(JobSchema, required=True)


class MonitoringResponseSchema(ma.Schema):
    success = fields.Boolean(required=True)
    requestID = fields.String(required=True)
    data = fields.Nested(MonitoringDataSchema, required=True)
    message = fields.String(required=True)
    timestamp = fields.String(required=True)


class ErrorResponseSchema(ma.Schema):
    requestID = fields.String(required=True)
    success = fields.Boolean(required=True)
    error = fields.String(required=True)
    timestamp = fields.String(required=True)
    code = fields.String(required=True)
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Validation errors: parameter -> reasons."},
    )
