"""create_app: flask-smorest's Api adds an HTTPException handler of its own; the service's,
registered after it, takes its place (Flask keeps one handler per exception class)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from support.api import JOB_URL, assert_error, bearer
from werkzeug.exceptions import HTTPException

from zdm_monitor.api.errors import handle_http_exception


def test_http_errors_are_answered_by_the_service_s_handler(app: Flask) -> None:
    assert app.error_handler_spec[None][None][HTTPException] is handle_http_exception


def test_http_errors_get_the_envelope_not_flask_smorest_s_body(client: FlaskClient) -> None:
    """404 (no route), 405 (wrong method) and webargs' 422, which the envelope turns into 400."""
    answers = [
        (client.get("/api/nope", headers=bearer()), 404, "HTTP-404"),
        (client.delete(f"{JOB_URL}1", headers=bearer()), 405, "HTTP-405"),
        (client.get(f"{JOB_URL}1?limit=0", headers=bearer()), 400, "REQUEST-ERROR-01"),
    ]
    for response, status, code in answers:
        body = assert_error(response, status, code)
        # flask-smorest's body: {"code": 404, "status": "Not Found", "errors": ...}
        assert "status" not in body and "errors" not in body
    assert list(answers[2][0].get_json()["details"]) == ["limit"]
