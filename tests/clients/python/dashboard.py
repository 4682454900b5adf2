"""A dashboard's tile for a job, through the client openapi-python-client generates from the
service's /api/openapi.json (the package zdm_client, generated next to this file by
tests/system/test_clients.py, which checks this file with mypy --strict and runs it).

The error codes are the generated enum, and the match on them is exhaustive: a code the
document gains that this file does not handle fails mypy at assert_never.
"""

from __future__ import annotations

from typing import assert_never

from zdm_client.models import ErrorResponse, ErrorResponseCode, MonitoringResponse

Code = ErrorResponseCode


def tile(answer: MonitoringResponse | ErrorResponse) -> str:
    """What the job's tile shows: its progress, or what to do about the error."""
    if isinstance(answer, ErrorResponse):
        return advice(answer)
    job = answer.data.job
    return f"{job.info.name}: {job.progress_info.status}"


def advice(error: ErrorResponse) -> str:
    """What the dashboard's user is told, by the error's code."""
    details = [] if not error.details else sorted(error.details.additional_properties)
    code = error.code
    match code:
        case Code.JOB_ERROR_01:
            return f"does not match: {', '.join(details)}" if details else "no such job"
        case Code.JOB_ERROR_20:
            return "incomplete job data"
        case Code.REQUEST_ERROR_01:
            return f"bad parameters: {', '.join(details)}"
        case Code.AUTH_ERROR_01:
            return "sign in again"
        case Code.SERVICE_UNAVAILABLE | Code.HTTP_408 | Code.HTTP_429:
            return "try again shortly"
        case Code.INTERNAL_ERROR:
            return "the service failed"
        case (
            Code.HTTP_400
            | Code.HTTP_403
            | Code.HTTP_404
            | Code.HTTP_405
            | Code.HTTP_411
            | Code.HTTP_413
            | Code.HTTP_414
            | Code.HTTP_416
            | Code.HTTP_417
            | Code.HTTP_421
            | Code.HTTP_431
            | Code.HTTP_501
            | Code.HTTP_505
        ):
            return f"the dashboard's request is wrong ({code.value})"
        case _:
            assert_never(code)
