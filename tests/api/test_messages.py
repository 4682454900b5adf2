"""One catalogue of messages in both languages; English on request, the contract's Korean else."""

from __future__ import annotations

import json
import re
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import JOB_URL, SECRET, MakeApp, add_job, assert_error, bearer, make_token

from zdm_monitor import state
from zdm_monitor.api.messages import CATALOGUE, ENGLISH, KOREAN, Message, say

SERVICE = Path(__file__).resolve().parents[2] / "zdm_monitor"
HANGUL = re.compile(r"[\uac00-\ud7af]")


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_message_is_in_both_languages_with_the_same_values(name: str) -> None:
    korean, in_english = CATALOGUE[name]
    assert korean and in_english
    assert HANGUL.search(korean) and not HANGUL.search(in_english), name
    assert placeholders(korean) == placeholders(in_english), name


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_message_renders_in_both_languages_with_its_values_filled(name: str) -> None:
    korean, in_english = CATALOGUE[name]
    values = {key: f"<{key}-value>" for key in placeholders(korean)}
    message = say(name, **values)
    assert message == Message(name, values)
    assert message.text(KOREAN) == message.text() == korean.format(**values)
    assert message.text(ENGLISH) == in_english.format(**values)
    for text in (message.text(KOREAN), message.text(ENGLISH)):
        assert "{" not in text and all(value in text for value in values.values()), text


def test_no_text_for_clients_is_written_outside_the_catalogue() -> None:
    """A Korean text anywhere else in the service would have no English."""
    found = [
        f"{path.name}:{number}"
        for path in SERVICE.rglob("*.py")
        if path.name != "messages.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HANGUL.search(line)
    ]
    assert found == []


ENGLISH_CASES = [
    (
        "no-such-job",
        "",
        404,
        "JOB-ERROR-01",
        "No backup job named 'no-such-job' was found.",
        "Name이 'no-such-job'인 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        "6",
        "",
        400,
        "JOB-ERROR-20",
        "The job's data is incomplete: its backupInfo record (the progress) is missing.",
        "작업 데이터가 불완전합니다. backupInfo 정보가 누락되었습니다.",
    ),
    (
        "1",
        "?mode=smart",
        404,
        "JOB-ERROR-01",
        "The backup job with ID '1' exists, but does not match the given filters.",
        "ID가 '1'인 Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 없습니다.",
    ),
]


# Headers listed with English before Korean and in quality order, so nginx (which goes by the
# order) decides as the service does.
LANGUAGES = [
    *(
        (header, "en")
        for header in (
            "en",
            "en-US",
            "fr, en;q=0.5",
            "EN-gb;q=0.9",
            "en-GB,ko;q=0.5",
            "ja,en;q=0.9,ko;q=0.8",
            "*, en",
        )
    ),
    *(
        (header, "ko")
        for header in (
            None,
            "",
            "ko",
            "ko-KR,ko;q=0.9,en;q=0.8",
            "fr",
            "*",
            "xx",
            "en;q=0, fr",
            "english",
            "en_US",
        )
    ),
]


@pytest.mark.parametrize(("identifier", "query", "status", "code", "en", "ko"), ENGLISH_CASES)
@pytest.mark.parametrize(("header", "language"), LANGUAGES)
def test_english_on_request_the_contract_s_korean_otherwise(
    client: FlaskClient,
    identifier: str,
    query: str,
    status: int,
    code: str,
    en: str,
    ko: str,
    header: str | None,
    language: str,
) -> None:
    headers = bearer() if header is None else {**bearer(), "Accept-Language": header}
    response = client.get(JOB_URL + identifier + query, headers=headers)
    assert_error(response, status, code, en if language == "en" else ko)  # the same code
    assert response.headers["Content-Language"] == language


def test_a_validation_error_in_english_names_each_parameter(client: FlaskClient) -> None:
    response = client.get(
        f"{JOB_URL}1?limit=0&mode=weekly", headers={**bearer(), "Accept-Language": "en"}
    )
    body = assert_error(response, 400, "REQUEST-ERROR-01")
    assert body["details"] == {
        "limit": ["Must be a whole number from 1 to 1000."],
        "mode": ["Must be one of full, increment, smart."],
    }
    assert body["error"] == (
        "Invalid request parameters. limit: Must be a whole number from 1 to 1000."
        " mode: Must be one of full, increment, smart."
    )


def test_a_token_error_in_english(client: FlaskClient) -> None:
    response = client.get(f"{JOB_URL}1", headers={"Accept-Language": "en"})
    assert_error(response, 401, "AUTH-ERROR-01", "An authentication token is required.")


NGINX_SITE = Path(__file__).resolve().parents[2] / "zdm_monitor" / "ops" / "nginx-site.conf"


@pytest.mark.parametrize(("header", "language"), LANGUAGES)
def test_nginx_picks_the_language_as_the_service_does(header: str | None, language: str) -> None:
    """nginx's own errors (the site's map of Accept-Language) speak as the app's would."""
    found = re.search(
        r'map \$http_accept_language \$zdm_language \{\n\s*default ko;\n\s*"~\*(.*)" en;\n\}',
        NGINX_SITE.read_text(),
    )
    assert found is not None
    english_first = re.compile(found.group(1), re.IGNORECASE).search(header or "")
    assert ("en" if english_first else "ko") == language


# --- Every error the service raises, through the real app, in both languages -------------------

SERVER_URL = "/api/backups/monitoring/system/"
CLOSED_PORT_URL = "postgresql://u@127.0.0.1:1/x"
INVALID = "요청 파라미터가 올바르지 않습니다. "
ONE_OF = "{} 중 하나여야 합니다."
STATUSES = "preparing, processing, complete, scheduled, registered, canceling, canceled, error"
MOUNT_POINT = "/ 또는 /var/log 처럼 /로 시작하는 마운트 경로여야 합니다."
BAD_TEXT = "NUL 문자나 잘못된 UTF-8을 포함할 수 없습니다."
TOO_LONG = "최대 255자까지 지정할 수 있습니다."

# A bad value of every query parameter of both endpoints, and of the identifier: (url, the
# parameter, why in the contract's Korean).
BAD_PARAMETERS = [
    (f"{JOB_URL}1?mode=weekly", "mode", ONE_OF.format("full, increment, smart")),
    (f"{JOB_URL}1?partition=var/log", "partition", MOUNT_POINT),
    (f"{JOB_URL}1?partition=/a%00b", "partition", BAD_TEXT),
    (f"{JOB_URL}1?drive=CD", "drive", "C, c, C: 처럼 드라이브 문자 하나여야 합니다."),
    (f"{JOB_URL}1?server={'s' * 256}", "server", TOO_LONG),
    (f"{JOB_URL}1?repositoryType=ftp", "repositoryType", ONE_OF.format("smb, nfs")),
    (f"{JOB_URL}1?repositoryPath=/backup%FF", "repositoryPath", BAD_TEXT),
    (f"{JOB_URL}1?status=done", "status", ONE_OF.format(STATUSES)),
    (f"{JOB_URL}1?jobName={'n' * 256}", "jobName", TOO_LONG),
    (f"{JOB_URL}1?page=0", "page", "1부터 100000까지의 정수여야 합니다."),
    (f"{JOB_URL}1?limit=1001", "limit", "1부터 1000까지의 정수여야 합니다."),
    (f"{JOB_URL}1?after=-1", "after", "0부터 2147483647까지의 정수여야 합니다."),
    (f"{JOB_URL}1?after=4", "after", "마지막 로그 줄 번호(3)보다 클 수 없습니다."),
    (f"{JOB_URL}1?sort=up", "sort", ONE_OF.format("asc, desc")),
    (f"{JOB_URL}1?detail=maybe", "detail", ONE_OF.format("true, false")),
    (f"{JOB_URL}1?mode=full&mode=smart", "mode", "한 번만 지정할 수 있습니다."),
    (f"{JOB_URL}1?partition[]=/", "partition", "목록이나 객체가 아닌 값 하나여야 합니다."),
    (f"{JOB_URL}a%00b", "identifier", BAD_TEXT),
    (f"{SERVER_URL}{'s' * 256}", "identifier", TOO_LONG),
    (f"{SERVER_URL}1?limit=101", "limit", "1부터 100까지의 정수여야 합니다."),
    (f"{SERVER_URL}1?logLimit=101", "logLimit", "0부터 100까지의 정수여야 합니다."),
    (f"{SERVER_URL}1?status=done", "status", ONE_OF.format(STATUSES)),
]


def ask(client: FlaskClient, url: str, language: str, method: str = "GET", **headers: str) -> Any:
    """The answer to url in the language asked; the language it says it is in must match."""
    if language == ENGLISH:
        headers["Accept-Language"] = "en"
    response = client.open(url, method=method, headers=headers)
    assert response.headers["Content-Language"] == language
    return response


def assert_in_both_languages(
    client: FlaskClient, url: str, status: int, code: str, korean: str, **headers: str
) -> dict[str, Any]:
    """The contract's Korean word for word, and the same error in English without a Korean
    letter, details and all; returns the English body."""
    in_korean = assert_error(ask(client, url, KOREAN, **headers), status, code, korean)
    in_english = assert_error(ask(client, url, ENGLISH, **headers), status, code)
    assert not HANGUL.search(json.dumps(in_english, ensure_ascii=False)), in_english
    assert in_english["error"]
    assert set(in_english.get("details", {})) == set(in_korean.get("details", {}))
    return in_english  # type: ignore[no-any-return]


@pytest.mark.parametrize(("url", "name", "why"), BAD_PARAMETERS)
def test_a_bad_parameter_in_both_languages(
    client: FlaskClient, url: str, name: str, why: str
) -> None:
    body = assert_in_both_languages(
        client, url, 400, "REQUEST-ERROR-01", f"{INVALID}{name}: {why}", **bearer()
    )
    assert body["error"] == f"Invalid request parameters. {name}: {body['details'][name][0]}"


def test_several_bad_parameters_in_both_languages(client: FlaskClient) -> None:
    url = f"{SERVER_URL}1?logLimit=-1&drive=CD"
    body = assert_in_both_languages(
        client,
        url,
        400,
        "REQUEST-ERROR-01",
        f"{INVALID}drive: C, c, C: 처럼 드라이브 문자 하나여야 합니다. "
        "logLimit: 0부터 100까지의 정수여야 합니다.",
        **bearer(),
    )
    assert body["details"] == {
        "drive": ["Must be one drive letter, such as C, c or C:."],
        "logLimit": ["Must be a whole number from 0 to 100."],
    }


AUDIENCE, ISSUER = "zdm-monitor", "zdm-api"


def token(key: str = SECRET, algorithm: str = "HS256", **claims: Any) -> dict[str, str]:
    """A bearer token for the configured audience and issuer unless the claims say otherwise."""
    return bearer(make_token(key, algorithm, **{"aud": AUDIENCE, "iss": ISSUER, **claims}))


# Each way a token is refused: (how, headers, the contract's Korean).
TOKEN_FAILURES: list[tuple[str, Callable[[], dict[str, str]], str]] = [
    ("none", dict, "인증 토큰이 필요합니다."),
    (
        "another scheme",
        lambda: {"Authorization": "Basic dGVzdGVyOnNlY3JldA=="},
        "Authorization 헤더는 'Bearer <토큰>' 형식이어야 합니다.",
    ),
    ("empty", lambda: {"Authorization": "Bearer "}, "토큰이 비어 있습니다."),
    ("malformed", lambda: bearer("not-a-jwt"), "토큰 형식이 올바르지 않습니다."),
    ("wrong audience", lambda: token(aud="other"), "토큰의 대상(aud)이 올바르지 않습니다."),
    ("wrong issuer", lambda: token(iss="other"), "토큰의 발급자(iss)가 올바르지 않습니다."),
    ("no exp", lambda: token(exp=None), "토큰에 필수 클레임이 없습니다."),
    ("bad signature", lambda: token(key=SECRET[::-1]), "토큰 서명이 올바르지 않습니다."),
    ("algorithm", lambda: token(SECRET * 2, "HS384"), "허용되지 않는 서명 알고리즘입니다."),
    (
        "exp not a number",
        lambda: token(exp=str(int(time.time()) + 3600)),
        "토큰의 exp 클레임은 올바른 시각(NumericDate)이어야 합니다.",
    ),
    ("expired", lambda: token(exp=int(time.time()) - 3600), "토큰이 만료되었습니다."),
    ("not yet valid", lambda: token(nbf=int(time.time()) + 3600), "토큰이 아직 유효하지 않습니다."),
]


@pytest.mark.parametrize(
    ("headers", "korean"),
    [case[1:] for case in TOKEN_FAILURES],
    ids=[case[0] for case in TOKEN_FAILURES],
)
def test_each_token_failure_in_both_languages(
    make_app: MakeApp, headers: Callable[[], dict[str, str]], korean: str
) -> None:
    # Audience and issuer are checked only when configured; the other tokens name neither.
    client = make_app(ZDM_JWT_AUDIENCE=AUDIENCE, ZDM_JWT_ISSUER=ISSUER).test_client()
    assert_in_both_languages(client, f"{JOB_URL}1", 401, "AUTH-ERROR-01", korean, **headers())


# The views' errors: (url, status, code, the contract's Korean).
VIEW_ERRORS = [
    (
        f"{JOB_URL}999999",
        404,
        "JOB-ERROR-01",
        "ID가 '999999'인 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{JOB_URL}{'9' * 40}",
        404,
        "JOB-ERROR-01",
        f"ID가 '{'9' * 40}'인 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{JOB_URL}no-such-job",
        404,
        "JOB-ERROR-01",
        "Name이 'no-such-job'인 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{JOB_URL}7",
        400,
        "JOB-ERROR-20",
        "작업 데이터가 불완전합니다. backup 정보가 누락되었습니다.",
    ),
    (
        f"{JOB_URL}6",
        400,
        "JOB-ERROR-20",
        "작업 데이터가 불완전합니다. backupInfo 정보가 누락되었습니다.",
    ),
    (
        f"{JOB_URL}1?mode=smart",
        404,
        "JOB-ERROR-01",
        "ID가 '1'인 Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 없습니다.",
    ),
    (
        f"{JOB_URL}daily-backup?mode=smart",
        404,
        "JOB-ERROR-01",
        "Name이 'daily-backup'인 Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 "
        "없습니다.",
    ),
    (
        f"{SERVER_URL}nobody",
        404,
        "JOB-ERROR-01",
        "서버 'nobody'에 등록된 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{SERVER_URL}{'9' * 40}",
        404,
        "JOB-ERROR-01",
        f"서버 '{'9' * 40}'에 등록된 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{SERVER_URL}linux-server-01?partition=/nope",
        404,
        "JOB-ERROR-01",
        "서버 'linux-server-01'에 파티션 '/nope'에 해당하는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{SERVER_URL}1?drive=c",
        404,
        "JOB-ERROR-01",
        "서버 '1'에 드라이브 'C:'에 해당하는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{SERVER_URL}1?status=error",
        404,
        "JOB-ERROR-01",
        "서버 '1'에 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
    ),
    (
        f"{SERVER_URL}linux-server-01?partition=/home/",
        400,
        "JOB-ERROR-20",
        "작업 데이터가 불완전합니다. 파티션 '/home' 에 대한 backup 또는 backupInfo 작업 정보를 "
        "찾을 수 없습니다.",
    ),
]


@pytest.mark.parametrize(("url", "status", "code", "korean"), VIEW_ERRORS)
def test_each_view_error_in_both_languages(
    client: FlaskClient, url: str, status: int, code: str, korean: str
) -> None:
    assert_in_both_languages(client, url, status, code, korean, **bearer())


def test_an_incomplete_job_under_a_drive_filter_in_both_languages(
    client: FlaskClient, db: connection
) -> None:
    add_job(db, 50, "half-written", server_id=2, partition=None, drive="E:", status=None)
    body = assert_in_both_languages(
        client,
        f"{SERVER_URL}windows-server-01?drive=e",
        400,
        "JOB-ERROR-20",
        "작업 데이터가 불완전합니다. 드라이브 'E:' 에 대한 backup 또는 backupInfo 작업 정보를 "
        "찾을 수 없습니다.",
        **bearer(),
    )
    assert body["error"] == (
        "The job data is incomplete: a backup or backupInfo record for drive 'E:' is missing."
    )


@pytest.mark.parametrize(
    ("method", "url", "status", "korean"),
    [
        ("POST", f"{JOB_URL}1", 405, "허용되지 않는 HTTP 메서드입니다."),
        ("DELETE", f"{SERVER_URL}1", 405, "허용되지 않는 HTTP 메서드입니다."),
        ("GET", "/api/backups/nothing-here", 404, "요청한 경로를 찾을 수 없습니다."),
    ],
)
def test_the_http_layer_s_errors_in_both_languages(
    client: FlaskClient, method: str, url: str, status: int, korean: str
) -> None:
    for language, expected in ((KOREAN, korean), (ENGLISH, None)):
        response = ask(client, url, language, method=method, **bearer())
        body = assert_error(response, status, f"HTTP-{status}", expected)
        assert HANGUL.search(body["error"]) if language == KOREAN else body["error"].isascii()
        if status == 405:
            assert response.headers["Allow"]


def test_the_database_unavailable_and_draining_in_both_languages(
    make_app: MakeApp, app: Flask
) -> None:
    no_database = make_app(DATABASE_URL=CLOSED_PORT_URL, ZDM_DB_CONNECT_TIMEOUT="1").test_client()
    unreachable = "데이터베이스에 연결할 수 없습니다. 잠시 후 다시 시도하세요."
    for url, headers in ((f"{JOB_URL}1", bearer()), ("/readyz", {})):
        body = assert_in_both_languages(
            no_database, url, 503, "SERVICE-UNAVAILABLE", unreachable, **headers
        )
        assert body["error"] == "The database cannot be reached. Try again shortly."
    state.start_draining(app)
    body = assert_in_both_languages(
        app.test_client(),
        "/readyz",
        503,
        "SERVICE-UNAVAILABLE",
        "종료 중입니다. 새 요청은 다른 인스턴스로 보내세요.",
    )
    assert body["error"] == "Shutting down: send new requests to another instance."


def test_a_value_that_looks_like_another_message_is_only_a_value(
    client: FlaskClient, db: connection
) -> None:
    """A server named like the middle of the partition message: matching the Korean text back
    against the templates took its drive message for a partition one; a message knows its own
    values."""
    name = "srv'에 파티션 'x"
    with db.cursor() as cur:
        cur.execute("INSERT INTO server (id, name, os) VALUES (90, %s, 'windows')", (name,))
    url = f"{SERVER_URL}{quote(name)}?drive=c"
    assert_error(
        ask(client, url, KOREAN, **bearer()),
        404,
        "JOB-ERROR-01",
        f"서버 '{name}'에 드라이브 'C:'에 해당하는 Backup 작업을 찾을 수 없습니다.",
    )
    assert_error(
        ask(client, url, ENGLISH, **bearer()),
        404,
        "JOB-ERROR-01",
        f"No backup job on server '{name}' protects drive 'C:'.",
    )
