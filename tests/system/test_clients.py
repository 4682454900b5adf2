"""Clients generated from the running service's /api/openapi.json, as dashboards build them.

openapi-typescript with openapi-fetch (tests/clients/typescript, pinned by its package-lock.json,
type-checked with tsc --strict and run with node) and openapi-python-client make the same calls
against gunicorn serving the production app; each answer must be what its parameters asked for.
Each has a dashboard (dashboard.ts, tests/clients/python/dashboard.py) that tells an answer from
an error and switches on every error code: its type checker (tsc --strict, mypy --strict) passes
on the service's document, and fails on a document with one code more.
The generated code is built here, in a temporary folder, from the document the service serves.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from support.api import SECRET, make_token
from support.processes import clean_env, free_port, http_get, stop

from zdm_devstack.stack import SERVICE_APP, spawn_gunicorn

# Starts gunicorn, npm and node: left out of make test-fast.
pytestmark = pytest.mark.slow

TYPESCRIPT = Path(__file__).resolve().parents[1] / "clients" / "typescript"
TYPESCRIPT_FILES = (
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "client.ts",
    "dashboard.ts",
)
PYTHON_DASHBOARD = Path(__file__).resolve().parents[1] / "clients" / "python" / "dashboard.py"
BIN = Path(sys.executable).parent
JOB = "/api/backups/monitoring/job/"
SERVER = "/api/backups/monitoring/system/"
NPM_TIMEOUT = 300  # npm ci downloads the pinned packages on a machine that has none cached
SEED_LOG = ["Starting backup...", "Processing files...", "Backup completed"]
# The code a later release might add, which the dashboards do not handle.
NEW_CODE = "JOB-ERROR-99"


@dataclass(frozen=True)
class Call:
    """One call both clients make: the path, the query as the client is given it, and what the
    answer must say (the report each client writes, less the URL it sent)."""

    path: str
    query: dict[str, str | int]
    expected: dict[str, Any]


CALLS = {
    "byId": Call(
        JOB + "1",
        {},
        {
            "status": 200,
            "cursor": "3",
            "name": "daily-backup",
            "log": SEED_LOG,
            "tile": "daily-backup: complete",
        },
    ),
    "byName": Call(
        JOB + "daily-backup-win",
        {},
        {
            "status": 200,
            "cursor": "2",
            "system": "windows-server-01",
            "drive": "C:",
            "partition": None,
        },
    ),
    "limit": Call(
        JOB + "bulk-data",
        {"limit": 2},
        {"status": 200, "cursor": "250", "log": ["line 249", "line 250"]},
    ),
    "partition": Call(
        JOB + "daily-backup",
        {"limit": 2, "partition": "/"},
        {"status": 200, "cursor": "3", "partition": "/", "log": SEED_LOG[1:]},
    ),
    # Another partition's job: the filter excludes it, and details says which filter.
    "otherPartition": Call(
        JOB + "weekly-smart",
        {"partition": "/"},
        {
            "status": 404,
            "cursor": None,
            "code": "JOB-ERROR-01",
            "details": {"partition": ["이 작업과 일치하지 않습니다."]},
            "tile": "does not match: partition",
        },
    ),
    "afterPage": Call(
        JOB + "bulk-data",
        {"after": 100, "page": 2, "limit": 10},
        {"status": 200, "cursor": "120", "log": [f"line {n}" for n in range(111, 121)]},
    ),
    # The second of two calls, with the first's ETag in If-None-Match.
    "notModified": Call(
        JOB + "1", {}, {"status": 304, "cursor": "3", "sameTag": True, "body": None}
    ),
    "notFound": Call(
        JOB + "999",
        {},
        {"status": 404, "cursor": None, "code": "JOB-ERROR-01", "tile": "no such job"},
    ),
    "server": Call(
        SERVER + "linux-server-01",
        {"logLimit": 1},
        {
            "status": 200,
            "cursor": None,
            "names": ["daily-backup", "weekly-smart", "bulk-data"],
            "logs": [["Backup completed"], [], ["line 250"]],
            "total": 3,
        },
    ),
}


@pytest.fixture(scope="module")
def service(reader_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn serving the production app on the test database, as the SELECT-only role."""
    run_dir = tmp_path_factory.mktemp("clients-gunicorn")
    env = clean_env(
        DATABASE_URL=reader_url,
        ZDM_JWT_SECRET=SECRET,
        ZDM_PROXY_COUNT="0",
        GUNICORN_WORKERS="2",
        # As the other tests' apps: the answers are read from the database on every call.
        ZDM_CACHE_MAX_AGE_MS="0",
    )
    port = free_port()
    with (run_dir / "gunicorn.log").open("wb") as output:
        process = spawn_gunicorn(env, port, run_dir, output, SERVICE_APP)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def document(service: str) -> dict[str, Any]:
    status, spec = http_get(f"{service}/api/openapi.json")
    assert status == 200
    return spec


def attempt(
    command: list[str], cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a build, check or client step and return how it went."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run(command: list[str], cwd: Path, timeout: float = 120, **env: str) -> str:
    """Run a step that must pass; its output is the failure message when it fails."""
    result = attempt(command, cwd, timeout, **env)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def with_one_code_more(document: dict[str, Any]) -> dict[str, Any]:
    """The document as a release that answers one more error code would serve it."""
    changed = copy.deepcopy(document)
    code = changed["components"]["schemas"]["ErrorResponse"]["properties"]["code"]
    code["enum"].append(NEW_CODE)
    code["x-enum-descriptions"].append("400: a code this release adds.")
    return changed


def with_success_a_boolean(document: dict[str, Any]) -> dict[str, Any]:
    """The document as it was before `success` was a literal: a boolean in every body."""
    changed = copy.deepcopy(document)
    for body in changed["components"]["schemas"].values():
        body.get("properties", {}).get("success", {}).pop("enum", None)
    return changed


@pytest.fixture(scope="module")
def typescript_client(service: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript client, built as a dashboard's: npm ci of the pinned packages, the types
    generated from the service's document, compiled by tsc in strict mode."""
    build = tmp_path_factory.mktemp("typescript-client")
    for name in TYPESCRIPT_FILES:
        shutil.copy(TYPESCRIPT / name, build / name)
    run(["npm", "ci", "--no-audit", "--no-fund"], build, NPM_TIMEOUT)
    binaries = build / "node_modules" / ".bin"
    document = f"{service}/api/openapi.json"
    run([str(binaries / "openapi-typescript"), document, "--output", "schema.d.ts"], build)
    run([str(binaries / "tsc"), "--project", ".", "--strict"], build)
    return build


def typescript_check(typescript_client: Path, document: dict[str, Any], folder: Path) -> str:
    """tsc --strict's complaints about the client and its dashboard, typed from this document
    (nothing when it passes); the packages are the built client's."""
    folder.mkdir()
    for name in TYPESCRIPT_FILES:
        shutil.copy(TYPESCRIPT / name, folder / name)
    (folder / "node_modules").symlink_to(typescript_client / "node_modules")
    (folder / "openapi.json").write_text(json.dumps(document))
    binaries = folder / "node_modules" / ".bin"
    run([str(binaries / "openapi-typescript"), "openapi.json", "--output", "schema.d.ts"], folder)
    result = attempt([str(binaries / "tsc"), "--project", ".", "--strict"], folder)
    assert (result.returncode == 0) == (not result.stdout), result.stdout
    return result.stdout


def generate_python_client(document: str, build: Path) -> None:
    """openapi-python-client's package zdm_client from the document (a URL or a file) in build,
    beside the dashboard."""
    (build / "config.yaml").write_text("package_name_override: zdm_client\npost_hooks: []\n")
    generate = [str(BIN / "openapi-python-client"), "generate", "--meta", "none"]
    source = ["--url", document] if "://" in document else ["--path", document]
    run([*generate, *source, "--config", "config.yaml", "--output-path", "zdm_client"], build)
    shutil.copy(PYTHON_DASHBOARD, build / "dashboard.py")


def mypy_check(build: Path) -> str:
    """mypy --strict's complaints about the dashboard (nothing when it passes), with the
    generated package it imports read but not judged."""
    strict = ["--strict", "--follow-imports=silent", "--no-incremental", "--python-version=3.11"]
    result = attempt([str(BIN / "mypy"), *strict, "dashboard.py"], build)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return "" if result.returncode == 0 else result.stdout


@pytest.fixture(scope="module")
def python_build(service: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the Python client generated from the service's document, and its
    dashboard."""
    build = tmp_path_factory.mktemp("python-client")
    generate_python_client(f"{service}/api/openapi.json", build)
    return build


@pytest.fixture(scope="module")
def python_client(python_build: Path) -> Iterator[ModuleType]:
    """The Python client openapi-python-client generates from the service's document."""
    sys.path.insert(0, str(python_build))
    try:
        yield importlib.import_module("zdm_client")
    finally:
        sys.path.remove(str(python_build))
        generated = [m for m in sys.modules if m.partition(".")[0] in ("zdm_client", "dashboard")]
        for name in generated:
            del sys.modules[name]


def sent_by_the_python_client(call: Call, document: dict[str, Any]) -> dict[str, str]:
    """What openapi-python-client puts on the wire for a call: the given parameters, and the
    documented default of each other parameter that has one (it sends those too)."""
    operation = document["paths"][call.path.rsplit("/", 1)[0] + "/{identifier}"]["get"]
    defaults = {
        p["name"]: str(p["schema"]["default"])
        for p in operation["parameters"]
        if p["in"] == "query" and "default" in p["schema"]
    }
    return {**defaults, **{name: str(value) for name, value in call.query.items()}}


def check(report: dict[str, dict[str, Any]], sent: dict[str, str]) -> None:
    assert list(report) == list(CALLS)
    for name, call in CALLS.items():
        answer = dict(report[name])
        url = urlsplit(answer.pop("url"))
        assert url.path == call.path, name
        assert answer == call.expected, name
        assert dict(parse_qsl(url.query)) == sent[name], name


def test_the_typescript_client_gets_what_its_parameters_ask_for(
    service: str, typescript_client: Path
) -> None:
    out = run(["node", "build/client.js"], typescript_client, BASE_URL=service, TOKEN=make_token())
    report = json.loads(out)
    # openapi-fetch sends exactly what it is given, in that order, each value encoded.
    for name, call in CALLS.items():
        query = urlencode(call.query)
        assert report[name]["url"] == call.path + (f"?{query}" if query else ""), name
    assert report["partition"]["url"].endswith("?limit=2&partition=%2F")
    check(
        report, {name: {k: str(v) for k, v in call.query.items()} for name, call in CALLS.items()}
    )


def test_the_typescript_types_take_each_parameter_on_its_own(typescript_client: Path) -> None:
    """The generated query type: one typed property per parameter, with its enum."""
    schema = (typescript_client / "schema.d.ts").read_text()
    for declaration in (
        'mode?: "full" | "increment" | "smart";',
        "partition?: string;",
        "limit?: number;",
        "after?: number;",
        "logLimit?: number;",
        '"If-None-Match"?: string;',
    ):
        assert declaration in schema, declaration
    assert "query?: {\n" in schema and '""' not in schema


def python_report(client_package: ModuleType, service: str) -> dict[str, dict[str, Any]]:
    """The TypeScript client's calls (tests/clients/typescript/client.ts), through the Python
    client, reported alike."""
    jobs = importlib.import_module("zdm_client.api.monitoring.get_job_monitoring")
    servers = importlib.import_module("zdm_client.api.monitoring.get_server_monitoring")
    unset = importlib.import_module("zdm_client.types").Unset
    tile = importlib.import_module("dashboard").tile
    sent: list[str] = []

    def remember(request: httpx.Request) -> None:
        sent.append(f"{request.url.raw_path.decode()}")

    client = client_package.AuthenticatedClient(
        base_url=service, token=make_token(), httpx_args={"event_hooks": {"request": [remember]}}
    )

    def value(field: Any) -> Any:
        return None if isinstance(field, unset) else field

    def lines(response: Any) -> dict[str, Any]:
        return {
            "status": int(response.status_code),
            "cursor": response.headers.get("X-Log-Cursor"),
            "url": sent[-1],
        }

    report: dict[str, dict[str, Any]] = {}
    with client:
        answer = jobs.sync_detailed("1", client=client)
        job = answer.parsed.data.job
        report["byId"] = {
            **lines(answer),
            "name": job.info.name,
            "log": job.log,
            "tile": tile(answer.parsed),
        }
        answer = jobs.sync_detailed("daily-backup-win", client=client)
        data = answer.parsed.data
        report["byName"] = {
            **lines(answer),
            "system": data.system.name,
            "drive": value(data.job.info.drive),
            "partition": value(data.job.info.partition),
        }
        answer = jobs.sync_detailed("bulk-data", client=client, limit=2)
        report["limit"] = {**lines(answer), "log": answer.parsed.data.job.log}
        answer = jobs.sync_detailed("daily-backup", client=client, limit=2, partition="/")
        job = answer.parsed.data.job
        report["partition"] = {**lines(answer), "partition": job.info.partition, "log": job.log}
        answer = jobs.sync_detailed("weekly-smart", client=client, partition="/")
        error = answer.parsed
        report["otherPartition"] = {
            **lines(answer),
            "code": error.code.value,
            "details": error.details.additional_properties,
            "tile": tile(error),
        }
        answer = jobs.sync_detailed("bulk-data", client=client, after=100, page=2, limit=10)
        report["afterPage"] = {**lines(answer), "log": answer.parsed.data.job.log}
        etag = jobs.sync_detailed("1", client=client).headers["ETag"]
        answer = jobs.sync_detailed("1", client=client, if_none_match=etag)
        report["notModified"] = {
            **lines(answer),
            "sameTag": answer.headers["ETag"] == etag,
            "body": answer.parsed,
        }
        answer = jobs.sync_detailed("999", client=client)
        report["notFound"] = {
            **lines(answer),
            "code": answer.parsed.code.value,
            "tile": tile(answer.parsed),
        }
        answer = servers.sync_detailed("linux-server-01", client=client, log_limit=1)
        data = answer.parsed.data
        report["server"] = {
            **lines(answer),
            "names": [each.info.name for each in data.job],
            "logs": [each.log for each in data.job],
            "total": data.summary.total,
        }
    return report


def test_the_python_client_gets_what_its_parameters_ask_for(
    service: str, python_client: ModuleType, document: dict[str, Any]
) -> None:
    report = python_report(python_client, service)
    check(report, {name: sent_by_the_python_client(call, document) for name, call in CALLS.items()})


def test_the_python_client_takes_each_parameter_on_its_own(python_client: ModuleType) -> None:
    """Plain keyword arguments, one per parameter, typed as the document types them: no query
    model, no union with an enum for the empty value."""
    jobs = importlib.import_module("zdm_client.api.monitoring.get_job_monitoring")
    parameters = inspect.signature(jobs.sync_detailed).parameters
    assert [name for name in parameters if name not in ("identifier", "client")] == [
        "mode",
        "partition",
        "drive",
        "server",
        "repository_type",
        "repository_path",
        "status",
        "job_name",
        "page",
        "limit",
        "after",
        "sort",
        "detail",
        "if_none_match",
        "accept_language",
        "x_request_id",
    ]
    unset = importlib.import_module("zdm_client.types").Unset
    assert parameters["limit"].annotation == int | unset
    assert parameters["after"].annotation == int | unset
    assert parameters["partition"].annotation == str | unset
    mode = importlib.import_module("zdm_client.models.get_job_monitoring_mode")
    assert [m.value for m in mode.GetJobMonitoringMode] == [
        "full",
        "increment",
        "smart",
    ]


def test_the_typescript_types_tell_an_answer_from_an_error(typescript_client: Path) -> None:
    """success a literal on each side, every code in a union, repository plainly nullable."""
    schema = (typescript_client / "schema.d.ts").read_text()
    assert schema.count("success: true;") == 2 and schema.count("success: false;") == 1
    assert 'code: "JOB-ERROR-20" | "REQUEST-ERROR-01" | "AUTH-ERROR-01" | "JOB-ERROR-01"' in schema
    assert 'repository?: components["schemas"]["Repository"] | null;' in schema
    assert "details?: {\n" in schema


def test_the_typescript_dashboard_handles_every_code_and_no_more(
    typescript_client: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    """tsc --strict passes on the service's document; a code more fails the switch's `never`,
    and a `success` that is a plain boolean fails the narrowing."""
    assert typescript_check(typescript_client, document, tmp_path / "served") == ""
    complaints = typescript_check(typescript_client, with_one_code_more(document), tmp_path / "new")
    assert "dashboard.ts" in complaints and f'"{NEW_CODE}"' in complaints, complaints
    assert "never" in complaints, complaints
    complaints = typescript_check(
        typescript_client, with_success_a_boolean(document), tmp_path / "boolean"
    )
    assert "dashboard.ts" in complaints and "'data' does not exist" in complaints, complaints


def test_the_python_types_tell_an_answer_from_an_error(
    python_client: ModuleType, python_build: Path, document: dict[str, Any]
) -> None:
    """The codes a generated enum, each of the document's; repository plainly nullable."""
    models = importlib.import_module("zdm_client.models")
    documented = document["components"]["schemas"]["ErrorResponse"]["properties"]["code"]["enum"]
    assert sorted(code.value for code in models.ErrorResponseCode) == sorted(documented)
    assert models.ErrorResponseCode("JOB-ERROR-01") is models.ErrorResponseCode.JOB_ERROR_01
    job = (python_build / "zdm_client" / "models" / "job.py").read_text()
    assert "    repository: None | Repository | Unset = UNSET\n" in job


def test_the_python_dashboard_handles_every_code_and_no_more(
    python_build: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    """mypy --strict passes on the client of the service's document; on the client of a document
    with a code more, the match's assert_never fails."""
    assert mypy_check(python_build) == ""
    newer = tmp_path / "openapi.json"
    newer.write_text(json.dumps(with_one_code_more(document)))
    generate_python_client(str(newer), tmp_path)
    complaints = mypy_check(tmp_path)
    assert "dashboard.py" in complaints and "JOB_ERROR_99" in complaints, complaints
    assert "assert_never" in complaints, complaints
