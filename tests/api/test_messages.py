"""One catalogue of messages in both languages; English on request, the contract's Korean else."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from support.api import JOB_URL, assert_error, bearer

from zdm_monitor.api.messages import CATALOGUE, english, say

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
    values = {key: f"<{key}-value>" for key in placeholders(korean)}
    assert english(say(name, **values)) == in_english.format(**values)


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
