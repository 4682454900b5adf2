"""Requests generated from /api/openapi.json, both ways: what the document allows is answered
(unless the data says otherwise), what it forbids is refused with the 400; every answer is on
the document's schema, headers included.

Cases are drawn from schemathesis's strategies inside plain hypothesis tests, so the document is
loaded from the real app of the test's fixtures. Whether a request is allowed is judged from what
went on the wire, read against the document itself: a generated value whose wire form is another,
valid one (an integer's digits, a list that serializes to nothing) counts as what was sent.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import parse_qsl

import jsonschema_rs
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from support.api import bearer
from werkzeug.test import TestResponse

# Thousands of generated requests: left out of make test-fast.
pytestmark = pytest.mark.slow

EXAMPLES = 300  # per test: 1,800 generated requests in all
PATHS = {
    "job": "/api/backups/monitoring/job/{identifier}",
    "server": "/api/backups/monitoring/system/{identifier}",
}
# The contract's answers that depend on the data, not on the request's form (API.md): a
# half-written job, and a cursor past the job's newest line.
INCOMPLETE = re.compile(r"작업 데이터가 불완전합니다\. .*")
PAST_NEWEST = re.compile(r"마지막 로그 줄 번호\(\d+\)보다 클 수 없습니다\.")
JUDGED = [negative_data_rejection, positive_data_acceptance]
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


# Each test's app serves one document: read and loaded once per app, not once per example.
@functools.cache
def document(app: Flask) -> dict[str, Any]:
    spec: dict[str, Any] = app.test_client().get("/api/openapi.json").get_json()
    return spec


@functools.cache
def operation(app: Flask, view: str) -> schemathesis.schemas.APIOperation:
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)[PATHS[view]]["GET"]


def typed(value: str, schema: dict[str, Any]) -> str | int:
    """A query value as the document types it: digits are an integer where one is allowed."""
    integer = schema.get("type") == "integer" and value.isascii() and value.isdigit()
    return int(value) if integer else value


def forbidden(spec: dict[str, Any], view: str, identifier: str, query: str) -> str | None:
    """What the document forbids in this request as sent (its path's identifier and query
    string, percent-decoded), or None when it allows all of it."""
    get = spec["paths"][PATHS[view]]["get"]
    params = {p["name"]: p for p in get["parameters"] if p["in"] == "query"}
    [identifier_doc] = [
        p for p in spec["paths"][PATHS[view]]["parameters"] if p["name"] == "identifier"
    ]
    if not jsonschema_rs.validator_for(identifier_doc["schema"]).is_valid(identifier):
        return "identifier"
    pairs = parse_qsl(query, keep_blank_values=True)
    # Each parameter is one value (the operation's description): given twice (an empty value
    # counts as not given), or as a list or an object, is refused.
    given = [name for name, value in pairs if value != ""]
    for name, _ in pairs:
        base = name.partition("[")[0]
        if base in params and (given.count(name) > 1 or base != name):
            return base
    for name, value in pairs:
        param = params.get(name)
        if param is None or (value == "" and param.get("allowEmptyValue")):
            continue
        schema = param["schema"]
        if not jsonschema_rs.validator_for(schema).is_valid(typed(value, schema)):
            return name
    return None


def send(app: Flask, view: str, case: schemathesis.Case) -> tuple[TestResponse, str, str]:
    """Send the case with a valid token; return the answer and the identifier and query
    string the app received."""
    response = app.test_client().open(**case.as_transport_kwargs(headers=bearer()))
    environ = response.request.environ
    path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
    identifier = path.removeprefix(PATHS[view].removesuffix("{identifier}"))
    return response, identifier, environ["QUERY_STRING"]


def unroutable(identifier: str) -> bool:
    """Paths no route takes, whatever the document says of the identifier: werkzeug's path
    converter needs a first character other than / and stops at a line break, and a path with
    // names nothing here (context.begin_request)."""
    return (
        identifier == "" or identifier.startswith("/") or "\n" in identifier or "//" in identifier
    )


def check_unroutable(response: TestResponse, identifier: str) -> None:
    assert unroutable(identifier), (identifier, response.get_data(as_text=True))
    assert response.get_json()["code"] == "HTTP-404", response.get_data(as_text=True)


def check_allowed(response: TestResponse, identifier: str, query: str) -> None:
    """An allowed request is answered: 200 or 304, or what the data says (404, the 400s)."""
    if response.status_code in (200, 304):
        return
    body = response.get_json()
    if response.status_code == 404 and body["code"] == "HTTP-404":
        check_unroutable(response, identifier)
        return
    if response.status_code == 404:
        assert body["code"] == "JOB-ERROR-01", response.get_data(as_text=True)
        return
    assert response.status_code == 400, response.get_data(as_text=True)
    reasons = " ".join(reason for found in body.get("details", {}).values() for reason in found)
    assert INCOMPLETE.fullmatch(body["error"]) or PAST_NEWEST.fullmatch(reasons), (
        query,
        response.get_data(as_text=True),
    )


def check_forbidden(response: TestResponse, identifier: str, what: str) -> None:
    """A forbidden request is refused with the 400 naming the parameter, unless no route
    takes its path (a 404 before anything is read)."""
    body = response.get_json()
    if response.status_code == 404:
        check_unroutable(response, identifier)
        return
    assert response.status_code == 400, response.get_data(as_text=True)
    assert body["code"] == "REQUEST-ERROR-01", response.get_data(as_text=True)
    assert body["details"], response.get_data(as_text=True)


def both_ways(app: Flask, view: str, mode: GenerationMode, data: st.DataObject) -> None:
    case = data.draw(operation(app, view).as_strategy(generation_mode=mode))
    response, identifier, query = send(app, view, case)
    what = forbidden(document(app), view, identifier, query)
    if what is None:
        check_allowed(response, identifier, query)
        if response.status_code in (200, 304):
            # The body and headers on the document's schema; acceptance is judged above.
            case.validate_response(response, headers=bearer(), excluded_checks=JUDGED)
    else:
        check_forbidden(response, identifier, what)


@pytest.mark.parametrize("view", list(PATHS))
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@fuzz_settings
@given(data=st.data())
def test_both_ways(app: Flask, view: str, mode: GenerationMode, data: st.DataObject) -> None:
    both_ways(app, view, mode, data)


@pytest.mark.parametrize("view", list(PATHS))
@fuzz_settings
@given(data=st.data())
def test_without_a_token(app: Flask, view: str, data: st.DataObject) -> None:
    case = data.draw(operation(app, view).as_strategy())
    response = case.call_and_validate()
    assert response.status_code in (401, 404, 405), response.text


def test_the_judge_reads_the_wire(app: Flask) -> None:
    """The judge itself: what it allows and forbids, on requests written by hand."""
    spec = document(app)
    allowed = [
        "after=3&limit=10&mode=",
        "after=3&page=2",
        "_=1&status=running",
        "x%5B%5D=1",
        "page=&page=2",
    ]
    for query in allowed:
        assert forbidden(spec, "job", "4", query) is None, query
    refused = {
        "mode=weekly": "mode",
        "limit=0": "limit",
        "after=3&page=0": "page",
        "mode=full&mode=full": "mode",
        "partition%5B%5D=/": "partition",
    }
    for query, what in refused.items():
        assert forbidden(spec, "job", "4", query) == what, query
    assert forbidden(spec, "job", "\x00", "") == "identifier"
    assert forbidden(spec, "job", "", "") == "identifier"
    assert forbidden(spec, "job", "x" * 256, "") == "identifier"
    assert forbidden(spec, "job", "9" * 300, "") is None
    assert forbidden(spec, "server", "1", "logLimit=0") is None
