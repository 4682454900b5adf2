"""make bench's lean bound answers the job the service answers, so the bound measures that read."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.api import SECRET, make_token

LEAN = Path(__file__).resolve().parents[2] / "bench" / "lean.py"


@pytest.fixture
def lean(reader_url: str, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setenv("DATABASE_URL", reader_url)
    monkeypatch.setenv("ZDM_JWT_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location("lean", LEAN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.test_client()  # type: ignore[no-any-return]


def test_the_lean_bound_answers_the_job_the_service_answers(
    lean: FlaskClient, get_job: Callable[..., Any]
) -> None:
    headers = {"Authorization": f"Bearer {make_token()}"}
    for job in (1, 2, 4):
        answer = lean.get(f"/api/backups/monitoring/job/{job}", headers=headers)
        assert answer.status_code == 200, job
        row = json.loads(answer.data)
        service = get_job(job).get_json()["data"]["job"]
        assert row["name"] == service["info"]["name"]
        assert len(row["log_lines"]) == len(service["log"])


def test_the_lean_bound_refuses_a_missing_job_and_a_bad_token(lean: FlaskClient) -> None:
    headers = {"Authorization": f"Bearer {make_token()}"}
    assert lean.get("/api/backups/monitoring/job/999999", headers=headers).status_code == 404
    wrong = {"Authorization": f"Bearer {make_token(key='x' * 40)}"}
    assert lean.get("/api/backups/monitoring/job/1", headers=wrong).status_code == 401
