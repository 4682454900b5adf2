"""The live page at /, in Debian's headless Chromium, against gunicorn and PostgreSQL.

The page polls with a one-second interval here (ZDM_POLL_ACTIVE_SECONDS=1). Rows written
through the test's own connection must then show up on the page without a reload.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    Response,
    Route,
    expect,
    sync_playwright,
)
from psycopg2.extensions import connection
from support.api import JOB_URL, SECRET, add_job, make_token
from support.processes import clean_env, free_port, json_lines, stop

from zdm_devstack.app import create_app as create_dev_app
from zdm_devstack.stack import spawn_gunicorn
from zdm_monitor import create_app

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# The flags that work on this machine's closed network (no calls home, no GPU).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEV_TOKEN = make_token(exp=2**31 - 1)
UPDATE_TIMEOUT_MS = 8000


@dataclass
class Service:
    base: str
    output_path: Path

    def access_records(self) -> list[dict[str, Any]]:
        """The app's JSON line for each request it answered."""
        text = self.output_path.read_text(encoding="utf-8", errors="replace")
        return [r for r in json_lines(text) if r.get("logger") == "zdm_monitor.request"]


@dataclass
class Watched:
    """A page and every answer the monitoring endpoint gave it, as the browser saw them."""

    page: Page
    answers: list[Response] = field(default_factory=list)

    def api(self, identifier: str) -> list[Response]:
        path = f"{JOB_URL}{identifier}?"
        return [r for r in self.answers if path in r.url]

    def wait_for(self, check: Callable[[], bool], timeout_ms: int = UPDATE_TIMEOUT_MS) -> bool:
        """Let the page run (and its events arrive) until check() holds or time runs out."""
        for _ in range(timeout_ms // 100):
            if check():
                return True
            self.page.wait_for_timeout(100)
        return check()

    def load(self, identifier: str, token: str | None = None) -> None:
        self.page.fill("#job", identifier)
        if token is not None:
            self.page.fill("#token", token)
        self.page.click("#load")


def serve(reader_url: str, run_dir: Path, **settings: str) -> Iterator[Service]:
    """gunicorn as the SELECT-only role, polling every second, with a development token."""
    output_path = run_dir / "gunicorn.log"
    port = free_port()
    env = clean_env(
        DATABASE_URL=reader_url,
        ZDM_JWT_SECRET=SECRET,
        ZDM_DEV_TOKEN=DEV_TOKEN,
        ZDM_POLL_ACTIVE_SECONDS="1",
        ZDM_PROXY_COUNT="0",
        GUNICORN_WORKERS="2",
        **settings,
    )
    with output_path.open("wb") as output:
        process = spawn_gunicorn(env, port, run_dir, output)
    try:
        yield Service(f"http://127.0.0.1:{port}", output_path)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def service(reader_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service in its default zone, UTC."""
    yield from serve(reader_url, tmp_path_factory.mktemp("live-page"))


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


def launch_chromium(playwright: Playwright, **env: str) -> Browser:
    """Debian's Chromium, with env added to this environment; a fresh, empty profile."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        env={**os.environ, **env} if env else None,
    )


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium as it runs on this machine, with its fonts."""
    launched = launch_chromium(playwright)
    yield launched
    launched.close()


@contextmanager
def open_page(browser: Browser, base: str) -> Iterator[Watched]:
    """The live page, freshly opened, with its API answers recorded; no script error after."""
    context = browser.new_context(viewport={"width": 1100, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(UPDATE_TIMEOUT_MS)
    result = Watched(page)
    page.on("response", lambda answer: result.answers.append(answer))
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{base}/")
    yield result
    context.close()
    # A CSP violation or a script error shows up here; so does each error answer the page got,
    # which the tests provoke on purpose.
    unexpected = [p for p in problems if "the server responded with a status of" not in p]
    assert unexpected == [], unexpected


@pytest.fixture
def watched(browser: Browser, service: Service) -> Iterator[Watched]:
    with open_page(browser, service.base) as opened:
        yield opened


def text_of(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_page_shows_a_running_job_and_its_new_lines_without_reload(
    watched: Watched, service: Service, db: connection
) -> None:
    page = watched.page
    # The development token is offered: filled in, and back with one click after clearing.
    expect(page.locator("#token")).to_have_value(DEV_TOKEN)
    page.fill("#token", "")
    page.click("#use-dev-token")
    expect(page.locator("#token")).to_have_value(DEV_TOKEN)

    watched.load("bulk-data")
    expect(page.locator("#server")).to_contain_text("linux-server-01")
    expect(page.locator("#place-label")).to_have_text("Partition")
    expect(page.locator("#place")).to_have_text("/data")
    expect(page.locator("#status")).to_have_text("processing")
    expect(page.locator("#percent")).to_have_text("45%")
    expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "45")
    assert page.locator("#progress-bar").evaluate("bar => bar.style.width") == "45%"
    messages = page.locator("#log .msg")
    expect(messages.last).to_have_text("line 250")
    expect(messages).to_have_count(100)  # the newest 100 lines: 151..250
    expect(messages.first).to_have_text("line 151")

    # Let it poll unchanged twice: If-None-Match with the ETag gets 304.
    assert watched.wait_for(lambda: sum(r.status == 304 for r in watched.api("bulk-data")) >= 2)
    # The service's zone, named once, and the footer on the same 24-hour clock.
    expect(page.locator("#job-zone")).to_have_text("Times in UTC, the service's zone.")
    footer = text_of(page, "#poll-state")
    assert re.fullmatch(
        r"Polling every 1 s · last answer 304 not modified at \d\d:\d\d:\d\d UTC", footer
    ), footer
    page.evaluate("window.notReloaded = true")

    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO backup_log (backup_id, line, logged_at, message)"
            " VALUES (4, 251, now(), 'line 251')"
        )
        cur.execute(
            "UPDATE backup_info SET percent = 46, last_report_at = now() WHERE backup_id = 4"
        )
    expect(messages.last).to_have_text("line 251")
    expect(page.locator("#percent")).to_have_text("46%")
    expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "46")
    assert page.locator("#progress-bar").evaluate("bar => bar.style.width") == "46%"
    expect(messages).to_have_count(101)
    assert messages.all_inner_texts()[-2:] == ["line 250", "line 251"]
    assert page.evaluate("window.notReloaded") is True

    answers = watched.api("bulk-data")
    first, polls = answers[0], answers[1:]
    assert "after=" not in first.url and "detail=true" in first.url, first.url
    assert first.status == 200
    assert polls and all("after=" in r.url and "detail=true" in r.url for r in polls)
    assert all(r.request.headers.get("if-none-match") for r in polls)
    assert any(r.status == 200 and "after=250" in r.url for r in polls), [r.url for r in polls]
    # The service saw the same: unchanged polls were answered 304 without a body.
    served = [r for r in service.access_records() if r.get("path") == f"{JOB_URL}bulk-data"]
    assert sum(r["status"] == 304 for r in served) >= 2, served
    assert all(r["bytes"] in (0, None) for r in served if r["status"] == 304), served

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "live-page.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, len(data)


@pytest.mark.parametrize(
    ("identifier", "token", "words"),
    [
        (
            "no-such-job",
            None,
            # Chromium asks for English (Accept-Language: en-US): the same code, in English.
            ["No backup job named 'no-such-job' was found.", "JOB-ERROR-01"],
        ),
        ("daily-backup", "not-a-token", ["AUTH-ERROR-01", "HTTP 401"]),
    ],
)
def test_api_errors_are_shown_in_words_and_end_polling(
    watched: Watched, identifier: str, token: str | None, words: list[str]
) -> None:
    watched.load(identifier, token)
    error = watched.page.locator("#error")
    expect(error).to_be_visible()
    for word in words:
        expect(error).to_contain_text(word)
    expect(watched.page.locator("#poll-state")).to_have_attribute("data-state", "stopped")
    expect(watched.page.locator("#job-view")).to_be_hidden()
    watched.page.wait_for_timeout(2500)
    assert len(watched.api(identifier)) == 1, [r.url for r in watched.answers]


def test_a_finished_job_is_shown_once_and_not_polled_again(watched: Watched) -> None:
    page = watched.page
    watched.load("daily-backup")
    expect(page.locator("#percent")).to_have_text("100%")
    expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#status")).to_have_text("complete")
    expect(page.locator("#end")).to_have_text("2025-01-15 02:30:00")
    expect(page.locator("#log .msg").last).to_have_text("Backup completed")
    expect(page.locator("#poll-state")).to_have_attribute("data-state", "stopped")
    expect(page.locator("#poll-state")).to_contain_text("complete")
    page.wait_for_timeout(3000)  # three poll intervals of a running job
    answers = watched.api("daily-backup")
    assert [r.status for r in answers] == [200], [r.url for r in answers]
    assert "X-Poll-Interval".lower() not in answers[0].headers


def test_switching_jobs_stops_polling_the_first(watched: Watched) -> None:
    page = watched.page
    watched.load("bulk-data")
    assert watched.wait_for(lambda: len(watched.api("bulk-data")) >= 2)
    watched.load("daily-backup-win")
    expect(page.locator("#place-label")).to_have_text("Drive")
    expect(page.locator("#place")).to_have_text("C:")
    expect(page.locator("#server")).to_contain_text("windows-server-01")
    expect(page.locator("#percent")).to_have_text("60%")
    expect(page.locator("#log .msg")).to_have_text(["Starting backup...", "Processing files..."])
    before = len(watched.api("bulk-data"))
    assert watched.wait_for(lambda: len(watched.api("daily-backup-win")) >= 3)
    assert len(watched.api("bulk-data")) == before
    assert page.locator("#log .msg").count() == 2  # nothing of bulk-data's log leaked in


def test_a_503_is_shown_and_retried_after_retry_after(watched: Watched) -> None:
    page = watched.page
    refused: list[str] = []

    def outage_once(route: Route) -> None:
        # The answer the service gives while PostgreSQL is down, for the first request only.
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(
            status=503,
            headers={"Retry-After": "2"},
            json={
                "success": False,
                "error": "데이터베이스에 연결할 수 없습니다.",
                "code": "SERVICE-UNAVAILABLE",
            },
        )

    page.route(f"**{JOB_URL}**", outage_once)
    watched.load("daily-backup-win")
    error = page.locator("#error")
    expect(error).to_contain_text("SERVICE-UNAVAILABLE")
    expect(error).to_contain_text("Trying again in 2 s")
    expect(page.locator("#poll-state")).to_have_attribute("data-state", "retrying")
    expect(page.locator("#percent")).to_have_text("60%")
    expect(error).to_be_hidden()
    assert len(refused) == 1


def test_pruned_lines_are_marked_as_a_gap(watched: Watched, db: connection) -> None:
    page = watched.page
    watched.load("bulk-data")
    messages = page.locator("#log .msg")
    expect(messages.last).to_have_text("line 250")
    # Lines 251..255 are written and 251..253 pruned before the page's next poll sees them.
    with db.cursor() as cur:
        cur.execute(
            "BEGIN;"
            " INSERT INTO backup_log (backup_id, line, message)"
            " SELECT 4, n, 'line ' || n FROM generate_series(251, 255) AS n;"
            " DELETE FROM backup_log WHERE backup_id = 4 AND line <= 253;"
            " COMMIT"
        )
    expect(messages.last).to_have_text("line 255")
    expect(page.locator("#log .gap")).to_have_count(1)
    texts = page.locator("#log li").all_inner_texts()
    assert "pruned" in texts[-3] and texts[-2].endswith("line 254"), texts[-4:]
    assert not any(t.endswith(("line 251", "line 252", "line 253")) for t in texts)


@pytest.mark.parametrize(
    ("factory", "dev_token", "offered"),
    [
        (create_dev_app, None, ""),
        (create_dev_app, 'a.b-c_d"<x>', "a.b-c_d&#34;&lt;x&gt;"),
        # The production app never reads the development stack's variable.
        (create_app, 'a.b-c_d"<x>', ""),
    ],
)
def test_page_needs_no_token_and_offers_only_a_development_one(
    make_app: Callable[..., Any], factory: Callable[..., Any], dev_token: str | None, offered: str
) -> None:
    client = make_app(factory, ZDM_DEV_TOKEN=dev_token).test_client()
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = response.get_data(as_text=True)
    assert f'<meta name="zdm-dev-token" content="{offered}">' in html
    assert html.count("zdm-dev-token") == 1
    # Nothing from elsewhere, no inline code: the CSP would refuse it.
    assert "http://" not in html and "https://" not in html and "<style" not in html
    assert "<script>" not in html and " style=" not in html
    for asset in ("/live/live.js", "/live/live.css"):
        with client.get(asset) as answer:
            assert answer.status_code == 200, asset
            assert "Content-Security-Policy" in answer.headers
            assert f'"{asset}"' in html
    missing = client.get("/live/missing.js")
    assert missing.status_code == 404
    assert missing.get_json()["code"] == "HTTP-404"


def offered_token(html: str) -> str:
    found = re.search(r'<meta name="zdm-dev-token" content="([^"]*)">', html)
    assert found is not None, html
    return found.group(1)


@pytest.mark.parametrize(
    ("host", "client", "offered"),
    [
        ("localhost", "127.0.0.1", True),
        ("localhost:8811", "127.0.0.1", True),
        ("LocalHost:8811", "127.0.0.1", True),
        ("127.0.0.1:8811", "127.0.0.1", True),
        ("[::1]:8811", "::1", True),
        ("127.0.0.1:8811", "::ffff:127.0.0.1", True),
        # DNS rebinding: the attacker's name, now resolving to 127.0.0.1.
        ("rebind.attacker.example:8811", "127.0.0.1", False),
        ("localhost.attacker.example", "127.0.0.1", False),
        ("127.0.0.1.nip.io:8811", "127.0.0.1", False),
        ("[::1].attacker.example", "::1", False),
        ("", "127.0.0.1", False),
        # Another client: not this machine's browser.
        ("127.0.0.1:8811", "127.0.0.2", False),
        ("localhost", "10.0.0.5", False),
    ],
)
def test_the_development_token_is_offered_only_to_loopback(
    make_app: Callable[..., Any], host: str, client: str, offered: bool
) -> None:
    app = make_app(create_dev_app, ZDM_DEV_TOKEN=DEV_TOKEN, ZDM_PROXY_COUNT="0")
    response = app.test_client().get(
        "/", headers={"Host": host}, environ_base={"REMOTE_ADDR": client}
    )
    assert response.status_code == 200
    assert offered_token(response.get_data(as_text=True)) == (DEV_TOKEN if offered else "")


@pytest.mark.parametrize(
    ("forwarded_host", "forwarded_for", "offered"),
    [
        ("localhost", "127.0.0.1", True),
        ("127.0.0.1", "198.51.100.7, 127.0.0.1", True),  # the last hop is nginx's client
        ("rebind.attacker.example", "127.0.0.1", False),
        ("localhost", "127.0.0.2", False),
        ("localhost", "127.0.0.1, 127.0.0.2", False),
    ],
)
def test_behind_nginx_the_forwarded_host_and_client_decide(
    make_app: Callable[..., Any], forwarded_host: str, forwarded_for: str, offered: bool
) -> None:
    app = make_app(create_dev_app, ZDM_DEV_TOKEN=DEV_TOKEN, ZDM_PROXY_COUNT="1")
    headers = {
        "Host": "localhost",
        "X-Forwarded-Host": forwarded_host,
        "X-Forwarded-For": forwarded_for,
    }
    response = app.test_client().get("/", headers=headers)
    assert offered_token(response.get_data(as_text=True)) == (DEV_TOKEN if offered else "")


def test_gunicorn_offers_no_token_to_a_rebound_name(service: Service) -> None:
    """As the probe asked: curl -H "Host: rebind.attacker.example:8811" http://127.0.0.1:.../"""
    port = int(service.base.rsplit(":", 1)[1])

    def page(**headers: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/", headers=headers)
            response = conn.getresponse()
            assert response.status == 200
            return response.read().decode()
        finally:
            conn.close()

    assert offered_token(page(Host=f"127.0.0.1:{port}")) == DEV_TOKEN
    assert offered_token(page(Host=f"localhost:{port}")) == DEV_TOKEN
    assert offered_token(page(Host="rebind.attacker.example:8811")) == ""
    # Without a proxy in front, forwarded headers are the client's own words.
    forged = page(Host="rebind.attacker.example", **{"X-Forwarded-Host": "localhost"})
    assert offered_token(forged) == ""


SERVER_URL = "/api/backups/monitoring/system/"


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, len(data)


def test_the_wall_shows_a_server_s_jobs_and_one_finishing(
    watched: Watched, service: Service, db: connection
) -> None:
    page = watched.page
    page.goto(f"{service.base}/?server=linux-server-01")
    cards = page.locator("#cards .card")
    expect(cards.locator(".card-name")).to_have_text(["daily-backup", "weekly-smart", "bulk-data"])
    expect(page.locator("#wall-name")).to_have_text("linux-server-01")
    expect(page.locator("#summary")).to_have_text(
        "3 jobs: 1 complete, 1 in progress, 0 failed, 1 pending · overall 48%"
        " · 1 incomplete, not shown"
    )
    bulk = page.locator('.card[data-job="bulk-data"]')
    expect(bulk.locator(".status")).to_have_text("processing")
    expect(bulk.locator(".progress-text")).to_have_text("45%")
    expect(bulk.locator(".card-place")).to_have_text("Partition /data")
    expect(bulk.locator(".card-message")).to_have_text("Copying /data")
    expect(bulk.locator(".card-elapsed")).to_have_text("elapsed 00:41:40")
    expect(bulk.locator(".stalled")).to_be_visible()  # its last report is long ago
    expect(page.locator('.card[data-job="daily-backup"] .stalled')).to_have_count(0)

    def walls() -> list[Response]:
        return [r for r in watched.answers if SERVER_URL in r.url]

    # It polls with its ETag at the wall's X-Poll-Interval (bulk-data's: 1 s here): 304s.
    assert watched.wait_for(lambda: sum(r.status == 304 for r in walls()) >= 2)
    assert all(r.request.headers.get("if-none-match") for r in walls()[1:])
    shoot(page, "wall.png")

    with db.cursor() as cur:
        cur.execute(
            "UPDATE backup_info SET status = 'complete', percent = 100, message = 'Done',"
            " ended_at = now(), last_report_at = now() WHERE backup_id = 4"
        )
    expect(bulk.locator(".status")).to_have_text("complete")
    expect(bulk.locator(".progress-text")).to_have_text("100%")
    expect(bulk.locator(".stalled")).to_have_count(0)
    expect(page.locator("#summary")).to_contain_text("2 complete, 0 in progress")
    shoot(page, "wall-job-finished.png")

    # The address survives a reload; a card opens its job's view, a deep link too.
    page.reload()
    expect(cards).to_have_count(3)
    page.locator('.card[data-job="weekly-smart"]').click()
    page.wait_for_url(f"{service.base}/?job=3")
    expect(page.locator("#job-name")).to_have_text("weekly-smart")
    page.reload()
    expect(page.locator("#job-name")).to_have_text("weekly-smart")
    expect(page.locator("#status")).to_have_text("scheduled")


def test_the_job_view_loads_older_lines_on_request(watched: Watched, service: Service) -> None:
    page = watched.page
    page.goto(f"{service.base}/?job=bulk-data")
    messages = page.locator("#log .msg")
    expect(messages).to_have_count(100)
    expect(messages.first).to_have_text("line 151")
    older = page.locator("#older")
    older.click()
    expect(messages).to_have_count(200)
    expect(messages.first).to_have_text("line 51")
    older.click()
    expect(messages).to_have_count(250)
    expect(older).to_be_hidden()
    numbers = [int(n) for n in page.locator("#log .line-no").all_inner_texts()]
    assert numbers == list(range(1, 251))
    assert page.url == f"{service.base}/?job=bulk-data"


def test_the_api_docs_load_without_a_console_error(browser: Browser, service: Service) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.goto(f"{service.base}/api/docs")
    # Swagger UI rendered both operations from the local document.
    expect(page.locator(".opblock-get")).to_have_count(2)
    # And calls the API from the page under its Content-Security-Policy: without a token, a 401.
    page.locator(".opblock-get").first.click()
    page.locator(".try-out__btn").click()
    page.locator('input[placeholder="identifier"]').fill("1")
    page.locator(".execute").click()
    expect(page.locator(".live-responses-table .response .response-col_status")).to_have_text("401")
    page.wait_for_timeout(1000)  # the browser's own request for /favicon.ico
    context.close()
    unauthorized = [p for p in problems if "401" in p]
    assert len(unauthorized) == 2, problems  # the answer, and the console's word on it
    assert [p for p in problems if p not in unauthorized] == []


# Each query parameter of the job endpoint and the input Swagger UI gives it: a dropdown of the
# enum's values, or a text box.
JOB_QUERY_INPUTS = {
    "mode": "select",
    "partition": "input",
    "drive": "input",
    "server": "input",
    "repositoryType": "select",
    "repositoryPath": "input",
    "status": "select",
    "jobName": "input",
    "page": "input",
    "limit": "input",
    "after": "input",
    "sort": "select",
    "detail": "select",
}


def query_input(page: Page, name: str) -> Any:
    return page.locator(f"tr[data-param-name='{name}'][data-param-in='query']").locator(
        "select, input[type=text]"
    )


def test_swagger_ui_gives_each_parameter_its_input_and_sends_what_was_chosen(
    browser: Browser, service: Service
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 1600})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{service.base}/api/docs")
    page.locator(".btn.authorize").click()
    page.locator(".auth-container input").fill(make_token())
    page.locator(".auth-btn-wrapper .authorize").click()
    page.locator(".btn-done").click()
    page.locator(".opblock-get").first.click()
    page.locator(".try-out__btn").click()
    # One input per parameter, each empty: the examples are shown, not sent.
    for name, kind in JOB_QUERY_INPUTS.items():
        field = query_input(page, name)
        expect(field).to_have_count(1)
        assert field.evaluate("e => e.tagName.toLowerCase()") == kind, name
        expect(field).to_have_value("")
    assert query_input(page, "status").locator("option").all_inner_texts()[:3] == [
        "--",
        "preparing",
        "processing",
    ]
    page.locator('input[placeholder="identifier"]').fill("1")
    query_input(page, "limit").fill("2")
    query_input(page, "partition").fill("/")

    def execute() -> Response:
        with page.expect_response(lambda r: JOB_URL in r.url) as answer:
            page.locator(".execute").click()
        return answer.value

    chosen = execute()
    sent = urlsplit(chosen.url).query
    assert sorted(sent.split("&")) == ["limit=2", "partition=%2F"], sent
    assert chosen.status == 200
    assert chosen.json()["data"]["job"]["log"] == ["Processing files...", "Backup completed"]
    shown = page.locator(".live-responses-table .response-col_description pre").first
    expect(shown).to_contain_text('"Processing files...",')
    expect(shown).to_contain_text('"Backup completed"')
    expect(shown).not_to_contain_text("Starting backup...")
    expect(page.locator(".live-responses-table .response .response-col_status")).to_have_text("200")
    shoot(page, "api-docs-try-it-out.png")
    # A dropdown's first choice is sent too, its example included (sort's is desc).
    query_input(page, "sort").select_option("desc")
    query_input(page, "limit").fill("")  # emptied again: not given
    again = execute()
    assert sorted(urlsplit(again.url).query.split("&")) == ["partition=%2F", "sort=desc"]
    assert again.json()["data"]["job"]["log"] == [
        "Backup completed",
        "Processing files...",
        "Starting backup...",
    ]
    context.close()
    assert problems == []


class FramingPage(BaseHTTPRequestHandler):
    """Another origin's page that puts /?src=<url> in a frame."""

    def do_GET(self) -> None:
        src = parse_qs(urlsplit(self.path).query).get("src")
        if not src:  # the browser's own /favicon.ico
            self.send_error(404)
            return
        body = f'<iframe name="victim" src="{html.escape(src[0])}"></iframe>'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def framer() -> Iterator[str]:
    """A server of another origin (loopback too: Chromium keeps other pages from loopback)."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FramingPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    ("path", "framed"),
    [("/api/docs", False), ("/", False), ("/api/openapi.json", True)],
    ids=["docs", "live page", "a JSON document, which may be framed"],
)
def test_pages_refuse_to_be_framed_by_another_origin(
    browser: Browser, service: Service, framer: str, path: str, framed: bool
) -> None:
    context = browser.new_context()
    page = context.new_page()
    refusals: list[str] = []
    page.on("console", lambda m: refusals.append(m.text) if "frame-ancestors" in m.text else None)
    blocked: list[str] = []
    page.on("requestfailed", lambda r: blocked.append(f"{r.url} {r.failure}"))
    target = f"{service.base}{path}"
    with page.expect_response(target) as answer:
        page.goto(f"{framer}?{urlencode({'src': target})}")
    assert answer.value.status == 200  # the service answered; the browser decides on framing
    frame = page.frame(name="victim")
    assert frame is not None
    page.wait_for_load_state("load")
    if framed:
        assert frame.url == target
        assert (refusals, blocked) == ([], [])
    else:
        assert frame.url != target, frame.url  # Chromium's error page instead
        assert blocked == [f"{target} net::ERR_BLOCKED_BY_RESPONSE"]
        assert len(refusals) == 1 and "frame-ancestors 'none'" in refusals[0], refusals
    context.close()


DISGUISED = "rtl\u202egnp.exe"  # shown as "rtlexe.png" where the override is obeyed


def visual_order(page: Page, selector: str, *parts: str) -> list[tuple[float, float]]:
    """Where each part of the element's text is drawn: (line's top, left), in reading order."""
    places = page.locator(selector).evaluate(
        """(element, parts) => {
            const node = element.firstChild;
            return parts.map((part) => {
                const start = node.textContent.indexOf(part);
                const range = document.createRange();
                range.setStart(node, start);
                range.setEnd(node, start + part.length);
                const box = range.getBoundingClientRect();
                return [Math.round(box.top), box.left];
            });
        }""",
        list(parts),
    )
    return [tuple(place) for place in places]


def test_a_right_to_left_override_does_not_disguise_a_name(
    watched: Watched, service: Service, db: connection
) -> None:
    add_job(db, 60, DISGUISED, message="copy \u2067done\u2069 \u200bx", percent=5)
    page = watched.page
    page.goto(f"{service.base}/?server=linux-server-01")
    name = f'.card[data-job="{DISGUISED}"] .card-name'
    expect(page.locator(name)).to_have_text("rtl<U+202E>gnp.exe")
    gnp, exe = visual_order(page, name, "gnp", "exe")
    assert gnp < exe, (gnp, exe)  # drawn as written: png before exe, not "rtlexe.png"
    expect(page.locator(f'.card[data-job="{DISGUISED}"] .card-message')).to_have_text(
        "copy <U+2067>done<U+2069> <U+200B>x"
    )
    page.locator(f'.card[data-job="{DISGUISED}"]').click()
    expect(page.locator("#job-name")).to_have_text("rtl<U+202E>gnp.exe")
    gnp, exe = visual_order(page, "#job-name", "gnp", "exe")
    assert gnp < exe, (gnp, exe)
    shoot(page, "disguised-name.png")


WHAT_TO_ENTER = (
    "Enter a job ID or name (e.g. bulk-data), or a server ID or name (e.g. linux-server-01)"
    " for a wall of its jobs."
)
WHERE_TOKENS_COME_FROM = (
    "Enter a bearer token: in a checkout, `.venv/bin/zdm-dev token` prints one (so does the"
    " banner of `make run`); in production, ZDM's API issues them."
)


@pytest.mark.parametrize(
    ("job", "token", "says", "focused"),
    [
        ("", "", f"{WHAT_TO_ENTER} {WHERE_TOKENS_COME_FROM}", "job"),
        ("", DEV_TOKEN, WHAT_TO_ENTER, "job"),
        ("bulk-data", "", WHERE_TOKENS_COME_FROM, "token"),
    ],
    ids=["nothing", "no job or server", "no token"],
)
def test_a_load_with_something_missing_says_what_and_sends_nothing(
    watched: Watched, job: str, token: str, says: str, focused: str
) -> None:
    page = watched.page
    page.fill("#job", job)
    page.fill("#token", token)
    page.click("#load")
    expect(page.locator("#error")).to_have_text(says)
    expect(page.locator(f"#{focused}")).to_be_focused()
    expect(page.locator("#poll-state")).to_have_attribute("data-state", "idle")
    page.wait_for_timeout(1500)
    assert [r.url for r in watched.answers if "/api/" in r.url] == []


def test_placeholders_read_as_examples(watched: Watched) -> None:
    page = watched.page
    for box, example in (("#job", "e.g. bulk-data"), ("#server-name", "e.g. linux-server-01")):
        expect(page.locator(box)).to_have_attribute("placeholder", example)
        shown = page.locator(box).evaluate(
            """(input) => {
                const example = getComputedStyle(input, "::placeholder");
                return [example.fontStyle, example.color, getComputedStyle(input).color];
            }"""
        )
        style, color, value_color = shown
        assert style == "italic" and color != value_color, shown
    page.fill("#token", "")
    page.click("#load")
    shoot(page, "empty-load.png")


def zone_name(zone: ZoneInfo) -> str:
    """The zone's offset now, as the page names it."""
    offset = datetime.now(zone).utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return "UTC"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"


@pytest.fixture
def zoned_service(reader_url: str, tmp_path: Path, zone: str) -> Iterator[Service]:
    """The service with its own ZDM_TIMEZONE."""
    yield from serve(reader_url, tmp_path, ZDM_TIMEZONE=zone)


@pytest.mark.parametrize("zone", ["Asia/Seoul", "America/St_Johns"])
def test_times_are_on_the_service_s_24_hour_clock_with_its_zone_named(
    browser: Browser, zoned_service: Service, zone: str
) -> None:
    named = zone_name(ZoneInfo(zone))
    with open_page(browser, zoned_service.base) as watched:
        page = watched.page
        watched.load("daily-backup")
        ended = datetime(2025, 1, 15, 2, 30, tzinfo=UTC).astimezone(ZoneInfo(zone))
        expect(page.locator("#end")).to_have_text(ended.strftime("%Y-%m-%d %H:%M:%S"))
        expect(page.locator("#job-zone")).to_have_text(f"Times in {named}, the service's zone.")

        watched.load("bulk-data")
        assert watched.wait_for(lambda: len(watched.api("bulk-data")) >= 2)
        footer = text_of(page, "#poll-state")
        found = re.fullmatch(
            rf"Polling every 1 s · last answer .+ at (\d\d):(\d\d):(\d\d) {re.escape(named)}",
            footer,
        )
        assert found, footer
        now = datetime.now(ZoneInfo(zone))
        hours, minutes, seconds = (int(part) for part in found.groups())
        shown = now.replace(hour=hours, minute=minutes, second=seconds, microsecond=0)
        late = (now - shown) % timedelta(days=1)  # across midnight too
        assert late <= timedelta(seconds=5), (footer, now)

        page.goto(f"{zoned_service.base}/?server=linux-server-01")
        expect(page.locator("#wall-zone")).to_have_text(f"Times in {named}, the service's zone.")


def test_a_machine_with_a_korean_font_is_told_nothing(watched: Watched, service: Service) -> None:
    page = watched.page
    page.goto(f"{service.base}/?server=windows-server-01")
    expect(page.locator('.card[data-job="일일-백업"] .card-name')).to_have_text("일일-백업")
    notice = page.locator("#font-notice")
    expect(notice).to_have_count(1)
    expect(notice).to_be_hidden()
    shoot(page, "korean-font.png")


NO_KOREAN_FONT = (
    "No font on this machine can draw Korean (Hangul), so Korean names, messages and log lines"
    " show as boxes: install one (fonts-nanum or fonts-noto-cjk on Debian and Ubuntu); an"
    " error's code says the same as its text."
)


def test_a_machine_without_a_korean_font_is_told_so_in_one_line(
    playwright: Playwright, service: Service, tmp_path: Path
) -> None:
    config = tmp_path / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n'
        "<fontconfig>\n  <dir>/usr/share/fonts/truetype/dejavu</dir>\n"
        f"  <cachedir>{tmp_path / 'fontconfig-cache'}</cachedir>\n</fontconfig>\n"
    )
    # The premise: this fontconfig offers no font with Hangul, and only DejaVu.
    fonts = subprocess.run(
        ["fc-list", ":", "family"],
        env={**os.environ, "FONTCONFIG_FILE": str(config)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert fonts and all(line.startswith("DejaVu") for line in fonts.splitlines()), fonts
    browser = launch_chromium(playwright, FONTCONFIG_FILE=str(config))
    try:
        with open_page(browser, service.base) as watched:
            page = watched.page
            notice = page.locator("#font-notice")
            expect(notice).to_be_visible()
            assert " ".join(notice.inner_text().split()) == NO_KOREAN_FONT
            page.goto(f"{service.base}/?server=windows-server-01")
            expect(page.locator('.card[data-job="일일-백업"]')).to_be_visible()
            expect(notice).to_be_visible()
            shoot(page, "no-korean-font.png")
    finally:
        browser.close()
