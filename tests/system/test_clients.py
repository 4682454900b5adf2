"""Clients generated from the running service's /api/openapi.json, as dashboards build them.

openapi-typescript with openapi-fetch (tests/clients/typescript, pinned by its package-lock.json,
type-checked with tsc --strict and run with node) and openapi-python-client make the same calls
against gunicorn serving the production app; each answer must be what its parameters asked for.
The generated code is built here, in a temporary folder, from the document the service serves.
"""

from __future__ import annotations

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
BIN = Path(sys.executable).parent
JOB = "/api/backups/monitoring/job/"
SERVER = "/api/backups/monitoring/system/"
NPM_TIMEOUT = 300  # npm ci downloads the pinned packages on a machine that has none cached
SEED_LOG = ["Starting backup...", "Processing files...", "Backup completed"]


@dataclass(frozen=True)
class Call:
    """One call both clients make: the path, the query as the client is given it, and what the
    answer must say (the report each client writes, less the URL it sent)."""

    path: str
    query: dict[str, str | int]
    expected: dict[str, Any]


CALLS = {
    "byId": Call(
        JOB + "1", {}, {"status": 200, "cursor": "3", "name": "daily-backup", "log": SEED_LOG}
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
    # Another partition's job: the filter excludes it.
    "otherPartition": Call(
        JOB + "weekly-smart",
        {"partition": "/"},
        {"status": 404, "cursor": None, "code": "JOB-ERROR-01"},
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
    "notFound": Call(JOB + "999", {}, {"status": 404, "cursor": None, "code": "JOB-ERROR-01"}),
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


def run(command: list[str], cwd: Path, timeout: float = 120, **env: str) -> str:
    """Run a build or client step; its output is the failure message when it fails."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def typescript_client(service: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript client, built as a dashboard's: npm ci of the pinned packages, the types
    generated from the service's document, compiled by tsc in strict mode."""
    build = tmp_path_factory.mktemp("typescript-client")
    for name in ("package.json", "package-lock.json", "tsconfig.json", "client.ts"):
        shutil.copy(TYPESCRIPT / name, build / name)
    run(["npm", "ci", "--no-audit", "--no-fund"], build, NPM_TIMEOUT)
    binaries = build / "node_modules" / ".bin"
    document = f"{service}/api/openapi.json"
    run([str(binaries / "openapi-typescript"), document, "--output", "schema.d.ts"], build)
    run([str(binaries / "tsc"), "--project", ".", "--strict"], build)
    return build


@pytest.fixture(scope="module")
def python_client(service: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The Python client openapi-python-client generates from the service's document."""
    build = tmp_path_factory.mktemp("python-client")
    (build / "config.yaml").write_text("package_name_override: zdm_client\npost_hooks: []\n")
    generate = [str(BIN / "openapi-python-client"), "generate", "--meta", "none"]
    document = ["--url", f"{service}/api/openapi.json", "--config", "config.yaml"]
    run([*generate, *document, "--output-path", "zdm_client"], build)
    sys.path.insert(0, str(build))
    try:
        yield importlib.import_module("zdm_client")
    finally:
        sys.path.remove(str(build))
        for name in [m for m in sys.modules if m == "zdm_client" or m.startswith("zdm_client.")]:
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
    jobs = importlib.import_module(
        "zdm_client.api.monitoring.get_api_backups_monitoring_job_identifier"
    )
    servers = importlib.import_module(
        "zdm_client.api.monitoring.get_api_backups_monitoring_system_identifier"
    )
    unset = importlib.import_module("zdm_client.types").Unset
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
        report["byId"] = {**lines(answer), "name": job.info.name, "log": job.log}
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
        report["otherPartition"] = {**lines(answer), "code": answer.parsed.code}
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
        report["notFound"] = {**lines(answer), "code": answer.parsed.code}
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
    jobs = importlib.import_module(
        "zdm_client.api.monitoring.get_api_backups_monitoring_job_identifier"
    )
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
    mode = importlib.import_module(
        "zdm_client.models.get_api_backups_monitoring_job_identifier_mode"
    )
    assert [m.value for m in mode.GetApiBackupsMonitoringJobIdentifierMode] == [
        "full",
        "increment",
        "smart",
    ]
