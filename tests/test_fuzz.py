"""Property-based fuzzing from /api/openapi.json: no server error, no answer off the schema.

Cases are drawn from schemathesis's strategy inside plain hypothesis tests, so the schema is
loaded from the real app of the test's fixtures.
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.api import bearer

# Thousands of generated requests: left out of make test-fast.
pytestmark = pytest.mark.slow

EXAMPLES = 600  # per test; the two tests send 1,200 generated requests
PATH = "/api/backups/monitoring/job/{identifier}"
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def operation(app: Flask) -> schemathesis.schemas.APIOperation:
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)[PATH]["GET"]


@fuzz_settings
@given(data=st.data())
def test_with_a_valid_token(app: Flask, data: st.DataObject) -> None:
    case = data.draw(operation(app).as_strategy())
    query = case.query or {}
    if query.get("after", "") != "" and query.get("page", "") != "":
        # OpenAPI cannot say that two parameters exclude each other: checked here instead.
        response = case.call(headers=bearer())
        assert response.status_code == 400, (case.formatted_path, query, response.text)
        assert response.json()["details"]["after"] == ["page와 함께 지정할 수 없습니다."]
        return
    case.call_and_validate(headers=bearer())


@fuzz_settings
@given(data=st.data())
def test_without_a_token(app: Flask, data: st.DataObject) -> None:
    case = data.draw(operation(app).as_strategy())
    response = case.call_and_validate()
    assert response.status_code in (401, 404, 405), response.text
