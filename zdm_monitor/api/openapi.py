"""The OpenAPI description of the endpoints: parameters, headers and responses.

Documentation only: the headers are made by polling.py, the bodies are documented by bodies.py,
and the query by its own schema (schemas.py).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from apispec.ext.marshmallow.openapi import OpenAPIConverter

from .fields import MAX_NAME_LENGTH, TEXT_PATTERN
from .polling import CACHE_CONTROL, HEADERS

SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# The document's info.description: what a dashboard developer needs before the first call.
DESCRIPTION = """\
The progress of ZDM's backup jobs, for dashboards that poll it: one job, or every job of one
server.

**The token.** Every call under `/api/backups/monitoring` needs a JWT that the ZDM API issues,
signed with the key this service checks (`ZDM_JWT_SECRET` or `ZDM_JWT_PUBLIC_KEY`). In a checkout
of zdm-monitor, `.venv/bin/zdm-dev token` prints one for `make run`; an operator with the secret
gets one from `zdm-monitor token`. Send it on every call as `Authorization: Bearer <token>` (here:
**Authorize**). A missing or bad token is a 401 with the code `AUTH-ERROR-01`.

**Answers and errors.** `success` tells them apart: `true` in an answer, `false` in an error.
Every error is one envelope (`ErrorResponse`): key on its `code`, which lists every code with
its status; `error` (and `details`) are for people, in Korean, or in English when
`Accept-Language` prefers it.
"""


def query_parameter(
    converter: OpenAPIConverter, field: ma.fields.Field[Any], ret: dict[str, Any]
) -> dict[str, Any]:
    """What apispec does not write of a query parameter: that it may be sent empty (`mode=`,
    as forms send it, is not given), and its example, moved to where Swagger UI shows it."""
    if ret["in"] != "query":
        return {}
    example = ret["schema"].pop("example", None)
    return {
        "description": f"{ret['description']} Sent empty (`{ret['name']}=`): not given.",
        "allowEmptyValue": True,
        **({} if example is None else {"example": example}),
    }


def parameters(subject: str, example: str) -> list[dict[str, Any]]:
    """The path's identifier (of a job or a server) and the request headers the API reads."""
    return [
        {
            "in": "path",
            "name": "identifier",
            "description": f"All ASCII digits: the {subject}'s ID (a number no {subject} can "
            f"have is a 404); anything else: the {subject}'s name, at most {MAX_NAME_LENGTH} "
            "characters, exact.",
            "schema": {
                "anyOf": [
                    {"type": "string", "pattern": "^[0-9]+$"},
                    {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_NAME_LENGTH,
                        "pattern": TEXT_PATTERN,
                    },
                ]
            },
            "example": example,
        },
        request_header(
            "If-None-Match", "The ETag of the answer the client holds: 304 while it is current."
        ),
        request_header(
            "Accept-Language",
            "`en` (or `en-US`, ...) preferred to Korean: error texts in English. The codes are "
            "the same in both languages.",
        ),
        request_header(
            "X-Request-ID",
            "The caller's request ID, echoed back and logged: 1-128 of `A-Z a-z 0-9 . _ : -`; "
            "anything else is replaced by a new ID.",
        ),
    ]


def request_header(name: str, description: str) -> dict[str, Any]:
    return {
        "in": "header",
        "name": name,
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


# Examples: the demo's job 3 (its log is empty: any `after` is good for it) and server 1.
JOB_PARAMETERS = parameters("job", "3")
SERVER_PARAMETERS = parameters("server", "1")


def header(
    description: str, kind: str = "string", required: bool = True, **schema: Any
) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": kind, **schema}}


REQUEST_ID = header("This request's ID: the caller's X-Request-ID when well formed, else new.")
# What a 200 and a 304 of the job endpoint carry (X-Log-Gap: a 200 only).
RESPONSE_HEADERS = {
    "ETag": header("Weak validator of this answer; send it back in If-None-Match."),
    "Cache-Control": header(f"`{CACHE_CONTROL}`: revalidate on every poll."),
    "X-Pagination": header(
        "The pages `page` counts, as JSON: total, total_pages, first_page, last_page, page, "
        "previous_page, next_page (keys that do not apply are left out). Without `after`, the "
        "log's pages; with it, the pages of the lines after the cursor (`total`: how many)."
    ),
    "X-Log-Cursor": header(
        "The newest line number delivered. Nothing delivered: with `after`, the larger of "
        "`after` and the newest line; without, `0` for an empty log, the line before the oldest "
        "for a page past the end. Pass it as `after` on the next poll.",
        "integer",
    ),
    "X-Log-Gap": header(
        "`true` when lines after `after` were pruned before this poll: the answer counts from the "
        "oldest line kept.",
        required=False,
        enum=["true"],
    ),
    "X-Poll-Interval": header(
        "Seconds to wait before the next poll; absent once the job is complete, canceled or in "
        "error.",
        "integer",
        required=False,
    ),
    "X-Request-ID": REQUEST_ID,
}
assert set(HEADERS) <= set(RESPONSE_HEADERS)
NOT_MODIFIED_HEADERS = {k: v for k, v in RESPONSE_HEADERS.items() if k != "X-Log-Gap"}
# The server view sends no log cursor: each job comes with its newest lines.
SERVER_RESPONSE_HEADERS = {
    **{k: v for k, v in RESPONSE_HEADERS.items() if not k.startswith("X-Log-")},
    "X-Pagination": header(
        "The server's pages of jobs as JSON: total, total_pages, first_page, last_page, page, "
        "previous_page, next_page (keys that do not apply are left out)."
    ),
    "X-Poll-Interval": header(
        "Seconds to wait before the next poll: the shortest of the page's jobs'; absent when "
        "every job on the page is complete, canceled or in error.",
        "integer",
        required=False,
    ),
}
ERROR_HEADERS = {
    "Content-Language": header("`ko` (the contract's Korean) or `en` (Accept-Language: en)."),
    "X-Request-ID": REQUEST_ID,
}
COMMON_ERRORS = {
    401: (
        "Missing or invalid bearer token (AUTH-ERROR-01).",
        {
            "WWW-Authenticate": header(
                'The RFC 6750 challenge: `Bearer realm="zdm-monitor"`, '
                "with error and error_description for a bad token."
            )
        },
    ),
    405: ("Wrong method (HTTP-405).", {"Allow": header("The methods the path answers.")}),
    503: (
        "The database cannot be reached or timed out (SERVICE-UNAVAILABLE).",
        {"Retry-After": header("Seconds to wait before trying again.", "integer")},
    ),
    500: ("Anything unexpected (INTERNAL-ERROR).", {}),
}
JOB_ERRORS = {
    400: ("Invalid parameter (REQUEST-ERROR-01) or incomplete job data (JOB-ERROR-20).", {}),
    404: ("No such job, or a filter excludes it (JOB-ERROR-01).", {}),
    **COMMON_ERRORS,
}
SERVER_ERRORS = {
    400: (
        "Invalid parameter (REQUEST-ERROR-01), or a job the partition or drive filter selects "
        "has only one half (JOB-ERROR-20).",
        {},
    ),
    404: ("No such server, no job on it, or the filters select none (JOB-ERROR-01).", {}),
    **COMMON_ERRORS,
}


def error_responses(
    errors: dict[int, tuple[str, dict[str, Any]]], not_modified: dict[str, Any]
) -> dict[int, Any]:
    """Documented with one doc() rather than an alt_response each: every alt_response wraps
    the view in one more layer that runs on every request."""
    responses: dict[int, dict[str, Any]] = {
        status: {
            "description": description,
            "headers": {**ERROR_HEADERS, **headers},
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        }
        for status, (description, headers) in errors.items()
    }
    responses[304] = {
        "description": "Not modified: If-None-Match holds the current ETag. No body.",
        "headers": not_modified,
    }
    return responses


ERROR_RESPONSES = error_responses(JOB_ERRORS, NOT_MODIFIED_HEADERS)
SERVER_ERROR_RESPONSES = error_responses(SERVER_ERRORS, SERVER_RESPONSE_HEADERS)
