"""The published OpenAPI document and the self-hosted interactive docs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema_rs
import pytest
from flask import abort
from flask.testing import FlaskClient
from support.api import JOB_URL, PROGRESS_KEYS, QUERY_PARAMETERS, MakeApp, bearer
from werkzeug.exceptions import default_exceptions

from zdm_monitor.api.payloads import format_elapsed, format_time

SERVICE = Path(__file__).resolve().parents[2] / "zdm_monitor"

PATH = "/api/backups/monitoring/job/{identifier}"
SERVER_PATH = "/api/backups/monitoring/system/{identifier}"
ENUMS = {
    "mode": {"full", "increment", "smart"},
    "status": {
        "preparing",
        "processing",
        "complete",
        "scheduled",
        "registered",
        "canceling",
        "canceled",
        "error",
    },
    # Aliases are listed with the names they stand for: the API accepts them as sent.
    "repositoryType": {"smb", "nfs", "cifs"},
    "sort": {"asc", "desc"},
    "detail": {"true", "false", "1", "0"},
}
ENUMS["status"] |= {"run", "running"}
BOUNDS = {"page": (1, 100_000, 1), "limit": (1, 1000, 20), "after": (0, 2_147_483_647, None)}
POLLING_HEADERS = {
    "X-Pagination": "string",
    "ETag": "string",
    "Cache-Control": "string",
    "X-Log-Cursor": "integer",
    "X-Log-Gap": "string",
    "X-Poll-Interval": "integer",
    "X-Request-ID": "string",
}
# Sent on every 200 (and 304) of the job endpoint; the others only when they apply.
ALWAYS_SENT = {"X-Pagination", "ETag", "Cache-Control", "X-Log-Cursor", "X-Request-ID"}
ERROR_STATUSES = ["400", "401", "404", "503", "500"]
ENVELOPE_FIELDS = {"requestID", "success", "error", "timestamp", "code"}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def operation(spec: dict[str, Any]) -> dict[str, Any]:
    assert PATH in spec["paths"]
    op: dict[str, Any] = spec["paths"][PATH]["get"]
    return op


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref ('#/components/...') until a real object."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The query parameters by name, in the document's order: one parameter per field, each
    optional and allowed empty (the contract counts `mode=` as not given)."""
    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    for name, param in params.items():
        assert param["required"] is False, name
        assert param["allowEmptyValue"] is True, name
        # The default serialization (form, exploded): `?name=value`, as clients send it.
        assert "style" not in param and "explode" not in param, name
    return params


def test_openapi_version_and_info(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]
    assert spec["info"]["version"]


def test_only_get_is_documented(spec: dict[str, Any]) -> None:
    methods = set(spec["paths"][PATH]) - {"parameters", "summary", "description"}
    assert methods == {"get"}


def test_every_query_parameter_documented(operation: dict[str, Any]) -> None:
    params = query_parameters(operation)
    assert list(params) == QUERY_PARAMETERS
    for name, param in params.items():
        assert param.get("description"), name
        assert param["schema"]["type"] in ("string", "integer"), name


@pytest.mark.parametrize("path", [PATH, SERVER_PATH])
def test_each_query_parameter_has_a_plain_schema_and_a_valid_example(
    spec: dict[str, Any], path: str
) -> None:
    """No second type for the empty value, no object: what generators turn into one typed
    argument per parameter; the example (shown by Swagger UI) is a value the schema allows."""
    for name, param in query_parameters(spec["paths"][path]["get"]).items():
        schema = param["schema"]
        assert not {"anyOf", "oneOf", "allOf", "not", "$ref"} & set(schema), name
        assert jsonschema_rs.validator_for(schema).is_valid(param["example"]), name
        assert "example" not in schema, name  # once, on the parameter


@pytest.mark.parametrize("path", [PATH, SERVER_PATH])
def test_the_leniencies_are_said_in_words(spec: dict[str, Any], path: str) -> None:
    for name, param in query_parameters(spec["paths"][path]["get"]).items():
        description = param["description"]
        assert f"Sent empty (`{name}=`): not given." in description, name
        if "enum" in param["schema"]:
            assert "Case-insensitive" in description, name


@pytest.mark.parametrize("name", list(ENUMS))
def test_enums(operation: dict[str, Any], name: str) -> None:
    schema = query_parameters(operation)[name]["schema"]
    assert schema["type"] == "string"
    assert set(schema["enum"]) == ENUMS[name]


@pytest.mark.parametrize("name", list(BOUNDS))
def test_integer_bounds(operation: dict[str, Any], name: str) -> None:
    minimum, maximum, default = BOUNDS[name]
    schema = query_parameters(operation)[name]["schema"]
    assert schema["type"] == "integer"
    assert schema["minimum"] == minimum
    assert schema["maximum"] == maximum
    assert schema.get("default") == default


def test_identifier_path_parameter(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    params = spec["paths"][PATH].get("parameters", []) + operation["parameters"]
    identifiers = [p for p in params if p["in"] == "path"]
    assert [p["name"] for p in identifiers] == ["identifier"]
    identifier = identifiers[0]
    assert identifier["required"] is True
    assert identifier.get("description")
    # Any digit string is an ID (too large: a 404); a name is at most 255 characters.
    number, name = identifier["schema"]["anyOf"]
    assert number == {"type": "string", "pattern": "^[0-9]+$"}
    assert (name["type"], name["minLength"], name["maxLength"]) == ("string", 1, 255)


def test_success_response(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    ok = resolve(spec, operation["responses"]["200"])
    assert set(ok["headers"]) == {
        "X-Pagination",
        "ETag",
        "Cache-Control",
        "X-Log-Cursor",
        "X-Log-Gap",
        "X-Poll-Interval",
        "X-Request-ID",
    }
    schema = resolve(spec, ok["content"]["application/json"]["schema"])
    assert set(schema["properties"]) == {"success", "requestID", "data", "message", "timestamp"}
    data = resolve(spec, schema["properties"]["data"])
    assert set(data["properties"]) == {"system", "job"}
    job = resolve(spec, data["properties"]["job"])
    # The contract's fields are required; detail=true's additions are optional.
    assert set(job["properties"]) == {"info", "progressInfo", "log", "repository", "logEntries"}
    assert set(job["required"]) == {"info", "progressInfo", "log"}
    info = resolve(spec, job["properties"]["info"])
    assert set(info["properties"]) == {"name", "partition", "drive", "id", "mode"}
    assert set(info["required"]) == {"name"}
    progress = resolve(spec, job["properties"]["progressInfo"])
    assert set(progress["properties"]) == {*PROGRESS_KEYS, "lastReport", "stalled"}
    assert set(progress["required"]) == set(PROGRESS_KEYS)
    system = resolve(spec, data["properties"]["system"])
    assert set(system["properties"]) == {"name", "id", "os"}
    assert set(system["required"]) == {"name"}


@pytest.mark.parametrize("name", ["sort", "detail"])
def test_documented_default_is_one_of_the_choices(operation: dict[str, Any], name: str) -> None:
    """A client that sends the documented default must get the default."""
    schema = query_parameters(operation)[name]["schema"]
    assert schema["default"] in schema["enum"], schema


def test_after_and_page_say_how_they_go_together(operation: dict[str, Any]) -> None:
    params = query_parameters(operation)
    assert "with `page`" in params["after"]["description"]
    assert "X-Log-Cursor" in params["after"]["description"]
    assert "With `after`" in params["page"]["description"]


def test_request_header_parameters(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    params = spec["paths"][PATH].get("parameters", []) + operation["parameters"]
    headers = [p for p in params if p["in"] == "header"]
    assert [p["name"] for p in headers] == ["If-None-Match", "Accept-Language", "X-Request-ID"]
    for header in headers:
        assert header.get("required", False) is False
        assert header["schema"]["type"] == "string"
        assert header.get("description")


def test_the_operation_describes_polling_and_codes(operation: dict[str, Any]) -> None:
    description = operation["description"]
    for word in ("If-None-Match", "X-Poll-Interval", "X-Log-Cursor", "after", "`code`"):
        assert word in description, word


def test_no_catch_all_response(spec: dict[str, Any]) -> None:
    for path in (PATH, SERVER_PATH):
        assert "default" not in spec["paths"][path]["get"]["responses"], path
    assert "DEFAULT_ERROR" not in spec.get("components", {}).get("responses", {})


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        ("401", "WWW-Authenticate", "string"),
        ("503", "Retry-After", "integer"),
        ("405", "Allow", "string"),
    ],
)
def test_error_headers_documented(
    spec: dict[str, Any], operation: dict[str, Any], status: str, name: str, kind: str
) -> None:
    headers = resolve(spec, operation["responses"][status])["headers"]
    assert headers[name]["required"] is True
    assert headers[name]["schema"]["type"] == kind
    assert headers["X-Request-ID"]["required"] is True
    assert headers["Content-Language"]["required"] is True


@pytest.mark.parametrize("status", ["200", "304"])
def test_polling_headers_documented(
    spec: dict[str, Any], operation: dict[str, Any], status: str
) -> None:
    response = resolve(spec, operation["responses"][status])
    headers = {name: resolve(spec, h) for name, h in response["headers"].items()}
    # X-Log-Gap belongs to the 200 that delivered the lines after the gap.
    expected = {k: v for k, v in POLLING_HEADERS.items() if status == "200" or k != "X-Log-Gap"}
    assert {name: h["schema"]["type"] for name, h in headers.items()} == expected
    assert all(h.get("description") for h in headers.values())
    assert {name for name, h in headers.items() if h["required"]} == ALWAYS_SENT
    if status == "200":
        assert headers["X-Log-Gap"]["schema"]["enum"] == ["true"]


def test_not_modified_has_no_body(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    response = resolve(spec, operation["responses"]["304"])
    assert "If-None-Match" in response["description"]
    assert "content" not in response


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_error_responses_use_the_envelope(
    spec: dict[str, Any], operation: dict[str, Any], status: str
) -> None:
    response = resolve(spec, operation["responses"][status])
    assert response.get("description")
    schema = resolve(spec, response["content"]["application/json"]["schema"])
    assert set(schema["properties"]) >= ENVELOPE_FIELDS
    assert set(schema.get("required", [])) >= ENVELOPE_FIELDS
    assert schema["properties"]["success"]["type"] == "boolean"


def test_error_responses_share_one_schema(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    refs = {
        operation["responses"][status]["content"]["application/json"]["schema"].get("$ref")
        for status in ERROR_STATUSES
    }
    assert len(refs) == 1
    assert None not in refs


def test_bearer_security(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert operation["security"]
    for requirement in operation["security"]:
        for name in requirement:
            assert schemes[name]["type"] == "http"
            assert schemes[name]["scheme"].lower() == "bearer"
    assert any(s.get("bearerFormat") == "JWT" for s in schemes.values())


def test_openapi_needs_no_token_and_is_stable(client: FlaskClient) -> None:
    first = client.get("/api/openapi.json").get_json()
    second = client.get("/api/openapi.json").get_json()
    assert first == second


def documented_codes(spec: dict[str, Any]) -> dict[str, int]:
    """Each code of the error body's enum, with the status its description gives it."""
    code = spec["components"]["schemas"]["ErrorResponse"]["properties"]["code"]
    assert len(set(code["enum"])) == len(code["enum"])
    meanings = zip(code["enum"], code["x-enum-descriptions"], strict=True)
    statuses = {name: int(meaning.split(":", 1)[0]) for name, meaning in meanings}
    for name, status in statuses.items():
        assert f"- `{name}` ({status}): " in code["description"], name
    return statuses


def test_every_code_the_app_answers_is_documented_with_its_status(
    spec: dict[str, Any], make_app: MakeApp
) -> None:
    """Each of the API's errors, the routing's, and any status Flask or werkzeug can raise."""

    def explode() -> str:
        raise RuntimeError("unexpected")

    def refuse(status: int) -> str:
        abort(status)

    app = make_app()
    app.add_url_rule("/explode", view_func=explode)
    app.add_url_rule("/refuse/<int:status>", view_func=refuse)
    client = app.test_client()
    no_database = make_app(DATABASE_URL="postgresql://u@127.0.0.1:1/x", ZDM_DB_CONNECT_TIMEOUT="1")
    answers = [
        client.get(f"{JOB_URL}1?limit=0", headers=bearer()),
        client.get(f"{JOB_URL}1"),
        client.get(f"{JOB_URL}999", headers=bearer()),
        client.get(f"{JOB_URL}1?mode=smart", headers=bearer()),
        client.get(f"{JOB_URL}6", headers=bearer()),
        client.get("/api/nope", headers=bearer()),
        client.delete(f"{JOB_URL}1", headers=bearer()),
        client.get("/explode"),
        no_database.test_client().get(f"{JOB_URL}1", headers=bearer()),
        *(client.get(f"/refuse/{status}") for status in sorted(default_exceptions)),
    ]
    documented = documented_codes(spec)
    for answer in answers:
        body = answer.get_json()
        assert body["success"] is False
        assert documented[body["code"]] == answer.status_code, body
    api_codes = {"JOB-ERROR-01", "JOB-ERROR-20", "REQUEST-ERROR-01", "AUTH-ERROR-01"}
    answered = {answer.get_json()["code"] for answer in answers}
    assert answered >= api_codes | {"INTERNAL-ERROR", "SERVICE-UNAVAILABLE", "HTTP-405"}
    # A filter that excludes a job is named in details.
    assert set(answers[3].get_json()["details"]) == {"mode"}


def test_every_code_the_nginx_site_answers_is_documented_with_its_status(
    spec: dict[str, Any],
) -> None:
    """The statuses of the site's error_page lines, as its map names them."""
    site = (SERVICE / "ops" / "nginx-site.conf").read_text()
    codes_map = re.search(r"map \$status \$zdm_error_code \{(.*?)\}", site, re.DOTALL)
    assert codes_map
    named = dict(re.findall(r"^\s*(\d+)\s+\"([A-Z-]+)\";", codes_map[1], re.MULTILINE))
    statuses = set()
    for line in re.findall(r"^\s*error_page ([^;]+) /zdm-error;", site, re.MULTILINE):
        given = [int(word) for word in line.split() if word.isdigit()]
        answered = line.split("=")[1] if "=" in line else None
        statuses |= {int(answered)} if answered else set(given)
    answered_codes = {named.get(str(status), f"HTTP-{status}"): status for status in statuses}
    documented = documented_codes(spec)
    assert answered_codes.items() <= documented.items()
    assert {"HTTP-431", "INTERNAL-ERROR", "SERVICE-UNAVAILABLE"} <= set(answered_codes)


def test_success_is_a_literal_on_each_side(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for name in ("MonitoringResponse", "ServerResponse"):
        assert schemas[name]["properties"]["success"] == {"type": "boolean", "enum": [True]}
    assert schemas["ErrorResponse"]["properties"]["success"] == {"type": "boolean", "enum": [False]}


def test_repository_is_a_plain_nullable_reference(spec: dict[str, Any]) -> None:
    repository = spec["components"]["schemas"]["Job"]["properties"]["repository"]
    assert repository["nullable"] is True
    assert repository["allOf"] == [{"$ref": "#/components/schemas/Repository"}]
    assert not {"anyOf", "oneOf", "type"} & set(repository)


def test_the_placeholders_are_documented_and_match(spec: dict[str, Any]) -> None:
    """Each field that holds `-` says until when, and its pattern takes every value the
    payloads write."""
    progress = spec["components"]["schemas"]["ProgressInfo"]["properties"]
    for name, until in (("start", "starts"), ("end", "ends"), ("elapsed", "starts")):
        assert f"`-` until it {until}" in progress[name]["description"], name
    assert "`-` when there is none" in progress["message"]["description"]
    assert "`-` until the first" in progress["lastReport"]["description"]
    zone = ZoneInfo("Asia/Seoul")
    moment = datetime(2025, 1, 15, 2, 0, tzinfo=UTC)
    times = ["-", format_time(moment, zone), "infinity", "-infinity", "20000-01-01 00:00:00"]
    times.append("0044-03-15 00:00:00 BC")
    elapsed = ["-", format_elapsed(moment, moment + timedelta(hours=120, seconds=5), None)]
    for name, values in (("start", times), ("end", times), ("lastReport", times)):
        for value in values:
            assert re.fullmatch(progress[name]["pattern"], value), (name, value)
    for value in elapsed:
        assert re.fullmatch(progress["elapsed"]["pattern"], value), value
    assert not re.fullmatch(progress["start"]["pattern"], "2025-01-15T02:00:00")
    assert not re.fullmatch(progress["elapsed"]["pattern"], "1:00")


def test_operation_ids_read_as_function_names(spec: dict[str, Any]) -> None:
    ids = {path: spec["paths"][path]["get"]["operationId"] for path in (PATH, SERVER_PATH)}
    assert ids == {PATH: "getJobMonitoring", SERVER_PATH: "getServerMonitoring"}


def test_the_description_says_how_to_get_and_send_a_token(spec: dict[str, Any]) -> None:
    description = spec["info"]["description"]
    for words in ("the ZDM API issues", "zdm-dev token", "Authorization: Bearer <token>", "`code`"):
        assert words in description, words


# --- Interactive docs, served without a CDN -----------------------------------------------------


@pytest.fixture
def docs_html(client: FlaskClient) -> str:
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)


def test_docs_reference_no_remote_urls(docs_html: str) -> None:
    assert not re.search(r"https?://", docs_html, re.IGNORECASE)
    assert "//cdn" not in docs_html.lower()
    for url in asset_urls(docs_html):
        assert not url.startswith("//"), url
        assert url.startswith("/"), url


def test_docs_point_at_the_local_spec(docs_html: str) -> None:
    assert "/api/openapi.json" in docs_html


def test_docs_assets_are_served(client: FlaskClient, docs_html: str) -> None:
    urls = asset_urls(docs_html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith(".css") for url in urls)
    assert "/live/docs.js" in urls  # the page's own script: no inline code
    assert "<script>" not in docs_html and "<style" not in docs_html
    for url in urls:
        with client.get(url) as response:
            assert response.status_code == 200, url
            assert len(response.get_data()) > (100 if url == "/live/docs.js" else 100_000), url


@pytest.mark.parametrize("name", ["swagger-ui-bundle.js", "swagger-ui.css"])
def test_swagger_ui_files(client: FlaskClient, name: str) -> None:
    expected = "text/css" if name.endswith(".css") else "javascript"
    with client.get(f"/api/docs/assets/{name}") as response:
        assert response.status_code == 200
        assert expected in (response.mimetype or "")


@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/assets/swagger-ui-bundle.js"])
def test_docs_may_not_be_framed_or_sniffed(client: FlaskClient, path: str) -> None:
    with client.get(path) as response:
        assert response.status_code == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"].split("; ")
        assert "frame-ancestors 'none'" in policy
        assert "default-src 'self'" in policy and "object-src 'none'" in policy
        # Nothing inline, nothing from elsewhere (its icons are data: images).
        assert "unsafe" not in response.headers["Content-Security-Policy"]
        assert "img-src 'self' data:" in policy


@pytest.mark.parametrize(
    "name",
    [
        "index.html",
        "oauth2-redirect.html",
        "swagger-initializer.js",  # the bundle's demo, on the Petstore
        "swagger-ui-standalone-preset.js",
        "swagger-ui-bundle.js.map",
        "../__init__.py",
        "..%2F__init__.py",
        "missing.js",
    ],
)
def test_docs_assets_are_only_what_the_page_loads(client: FlaskClient, name: str) -> None:
    response = client.get(f"/api/docs/assets/{name}")
    assert response.status_code == 404
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == "HTTP-404"


FILTERS = [
    "mode",
    "partition",
    "drive",
    "server",
    "repositoryType",
    "repositoryPath",
    "status",
    "jobName",
]


def test_the_server_view_is_documented(spec: dict[str, Any], operation: dict[str, Any]) -> None:
    server = spec["paths"][SERVER_PATH]["get"]
    params = query_parameters(server)
    assert list(params) == [*FILTERS, "page", "limit", "logLimit", "detail"]
    # The filters are the job endpoint's, described once.
    for name in FILTERS:
        assert params[name] == query_parameters(operation)[name], name
    bounds = {
        name: (
            params[name]["schema"]["minimum"],
            params[name]["schema"]["maximum"],
            params[name]["schema"].get("default"),
        )
        for name in ("page", "limit", "logLimit")
    }
    assert bounds == {"page": (1, 100_000, 1), "limit": (1, 100, 20), "logLimit": (0, 100, 10)}
    path_params = spec["paths"][SERVER_PATH].get("parameters", []) + server["parameters"]
    assert [p["name"] for p in path_params if p["in"] == "path"] == ["identifier"]
    assert "If-None-Match" in [p["name"] for p in path_params if p["in"] == "header"]
    ok = resolve(spec, server["responses"]["200"])
    assert set(ok["headers"]) == {
        "ETag",
        "Cache-Control",
        "X-Pagination",
        "X-Poll-Interval",
        "X-Request-ID",
    }
    data = resolve(
        spec, resolve(spec, ok["content"]["application/json"]["schema"])["properties"]["data"]
    )
    assert set(data["properties"]) == {"system", "summary", "job", "pagination"}
    assert data["properties"]["job"]["type"] == "array"
    assert "content" not in server["responses"]["304"]
    assert set(ERROR_STATUSES) <= set(server["responses"])
    assert server["security"] == operation["security"]
