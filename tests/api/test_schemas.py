"""MonitoringQuerySchema on its own: normalisation of every parameter and every refusal."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from marshmallow import ValidationError
from support.api import JOB_URL, QUERY_PARAMETERS, bearer
from werkzeug.datastructures import MultiDict

from zdm_monitor.api.messages import Message
from zdm_monitor.api.monitoring import blp
from zdm_monitor.api.schemas import PARSED_QUERIES, MonitoringQuery, MonitoringQuerySchema
from zdm_monitor.data.repository import JobFilters

FULLWIDTH_TWELVE = "\uff11\uff12"
FULLWIDTH_C = "\uff23"
FULLWIDTH_TWO = "\uff12"


def load(*pairs: tuple[str, str]) -> MonitoringQuery:
    query = MonitoringQuerySchema().load(MultiDict(list(pairs)))
    assert isinstance(query, MonitoringQuery)
    return query


def errors(*pairs: tuple[str, str]) -> dict[str, list[str]]:
    """Each refused parameter with its reasons: Messages of the catalogue, here in Korean."""
    with pytest.raises(ValidationError) as info:
        MonitoringQuerySchema().load(MultiDict(list(pairs)))
    messages = info.value.messages
    assert isinstance(messages, dict)
    assert all(isinstance(why, Message) for whys in messages.values() for why in whys)
    return {name: [why.text() for why in whys] for name, whys in messages.items()}


def test_nothing_given() -> None:
    query = load()
    assert query.filters == JobFilters()
    assert query.page == 1
    assert query.limit == 20


def test_unknown_parameters_ignored() -> None:
    query = load(("_", "1736900000000"), ("foo", "bar"), ("_", "again"))
    assert query.filters == JobFilters()
    assert (query.page, query.limit) == (1, 20)


@pytest.mark.parametrize(
    "name",
    QUERY_PARAMETERS,
)
def test_empty_value_counts_as_not_given(name: str) -> None:
    query = load((name, ""))
    assert query.filters == JobFilters()
    assert (query.page, query.limit) == (1, 20)


def test_empty_value_next_to_a_real_one_is_not_a_duplicate() -> None:
    assert load(("mode", ""), ("mode", "full")).filters.mode == "full"


# --- Normalisations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("full", "full"), ("FULL", "full"), ("Increment", "increment"), ("sMaRt", "smart")],
)
def test_mode(raw: str, mode: str) -> None:
    assert load(("mode", raw)).filters.mode == mode


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("preparing", "preparing"),
        ("processing", "processing"),
        ("complete", "complete"),
        ("scheduled", "scheduled"),
        ("registered", "registered"),
        ("canceling", "canceling"),
        ("canceled", "canceled"),
        ("error", "error"),
        ("COMPLETE", "complete"),
        ("run", "processing"),
        ("RUN", "processing"),
        ("running", "processing"),
        ("Running", "processing"),
    ],
)
def test_status(raw: str, status: str) -> None:
    assert load(("status", raw)).filters.status == status


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("smb", "smb"),
        ("SMB", "smb"),
        ("nfs", "nfs"),
        ("NFS", "nfs"),
        ("cifs", "smb"),
        ("CIFS", "smb"),
    ],
)
def test_repository_type(raw: str, kind: str) -> None:
    assert load(("repositoryType", raw)).filters.repository_type == kind


@pytest.mark.parametrize(("raw", "drive"), [("C", "C:"), ("c", "C:"), ("C:", "C:"), ("c:", "C:")])
def test_drive(raw: str, drive: str) -> None:
    assert load(("drive", raw)).filters.drive == drive


def test_other_drive_letter() -> None:
    assert load(("drive", "d")).filters.drive == "D:"


@pytest.mark.parametrize(
    ("raw", "partition"),
    [("/", "/"), ("/var/log", "/var/log"), ("/var/log/", "/var/log"), ("/data", "/data")],
)
def test_partition(raw: str, partition: str) -> None:
    assert load(("partition", raw)).filters.partition == partition


@pytest.mark.parametrize(("raw", "server_id"), [("1", 1), ("42", 42), ("007", 7)])
def test_server_digits_mean_id(raw: str, server_id: int) -> None:
    filters = load(("server", raw)).filters
    assert filters.server_id == server_id
    assert filters.server_name is None


@pytest.mark.parametrize("raw", ["linux-server-01", "server 1", FULLWIDTH_TWELVE, "1a", "-1"])
def test_server_otherwise_means_name(raw: str) -> None:
    filters = load(("server", raw)).filters
    assert filters.server_name == raw
    assert filters.server_id is None


def test_exact_text_filters_kept_as_given() -> None:
    filters = load(
        ("repositoryPath", "\\\\backup-server\\backups"),
        ("jobName", "일일-백업"),
    ).filters
    assert filters.repository_path == "\\\\backup-server\\backups"
    assert filters.job_name == "일일-백업"


def test_all_parameters_together() -> None:
    query = load(
        ("mode", "Full"),
        ("partition", "/var/log/"),
        ("server", "1"),
        ("repositoryType", "cifs"),
        ("repositoryPath", "/backup/linux-server-01"),
        ("status", "run"),
        ("jobName", "daily-backup"),
        ("page", "3"),
        ("limit", "50"),
        ("_", "123"),
    )
    assert query.filters == JobFilters(
        mode="full",
        partition="/var/log",
        server_id=1,
        repository_type="smb",
        repository_path="/backup/linux-server-01",
        status="processing",
        job_name="daily-backup",
    )
    assert (query.page, query.limit) == (3, 50)


@pytest.mark.parametrize(("raw", "page"), [("1", 1), ("2", 2), ("100000", 100_000), ("007", 7)])
def test_page(raw: str, page: int) -> None:
    assert load(("page", raw)).page == page


@pytest.mark.parametrize(("raw", "limit"), [("1", 1), ("20", 20), ("1000", 1000)])
def test_limit(raw: str, limit: int) -> None:
    assert load(("limit", raw)).limit == limit


def test_name_of_255_characters_accepted() -> None:
    assert load(("jobName", "n" * 255)).filters.job_name == "n" * 255


# --- Refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    QUERY_PARAMETERS,
)
def test_given_twice(name: str) -> None:
    value = {
        "mode": "full",
        "partition": "/",
        "drive": "C",
        "server": "1",
        "repositoryType": "nfs",
        "repositoryPath": "/backup",
        "status": "complete",
        "jobName": "daily-backup",
        "page": "1",
        "limit": "20",
        "after": "0",
        "sort": "asc",
        "detail": "true",
    }[name]
    messages = errors((name, value), (name, value))
    assert set(messages) == {name}
    assert messages[name]


@pytest.mark.parametrize("key", ["partition[]", "partition[0]", "partition[a][b]"])
def test_given_as_a_list_or_an_object(key: str) -> None:
    """jQuery's and qs's forms of a list or an object: refused by name, not taken as unknown."""
    assert errors((key, "/"), ("mode", "full")) == {
        "partition": ["목록이나 객체가 아닌 값 하나여야 합니다."]
    }


def test_unknown_bracketed_names_are_ignored() -> None:
    assert load(("_[]", "1"), ("x[0]", "2"), ("mode", "full")).filters.mode == "full"


def test_several_given_twice_all_named() -> None:
    messages = errors(("mode", "full"), ("mode", "smart"), ("page", "1"), ("page", "2"))
    assert set(messages) == {"mode", "page"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mode", "weekly"),
        ("mode", "ful"),
        ("mode", " "),
        ("status", "done"),
        ("status", "runs"),
        ("repositoryType", "ftp"),
        ("drive", "CD"),
        ("drive", "1"),
        ("drive", "C:/"),
        ("drive", FULLWIDTH_C),
        ("partition", "var/log"),
        ("partition", "C:"),
        ("page", "0"),
        ("page", "-1"),
        ("page", "100001"),
        ("page", "1.5"),
        ("page", "abc"),
        ("page", "1e3"),
        ("page", FULLWIDTH_TWO),
        ("page", " 2"),
        ("page", "9" * 5000),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "-20"),
        ("limit", "ten"),
        ("jobName", "n" * 256),
        ("jobName", "a\x00b"),
        ("server", "s" * 256),
        ("server", "\x00"),
        ("repositoryPath", "bad\ufffdbytes"),
        ("repositoryPath", "/" + "p" * 4096),
    ],
)
def test_invalid_value_named(name: str, value: str) -> None:
    messages = errors((name, value))
    assert set(messages) == {name}
    assert all(isinstance(why, str) and why for why in messages[name])


def test_every_bad_parameter_named_at_once() -> None:
    messages = errors(("mode", "x"), ("status", "y"), ("limit", "0"), ("drive", "??"))
    assert set(messages) == {"mode", "status", "limit", "drive"}


def test_reason_says_what_is_accepted() -> None:
    assert "full" in " ".join(errors(("mode", "weekly"))["mode"])
    assert "1000" in " ".join(errors(("limit", "5000"))["limit"])
    assert "100000" in " ".join(errors(("page", "0"))["page"])


def test_schema_accepts_a_plain_mapping() -> None:
    query = MonitoringQuerySchema().load({"mode": "SMART", "limit": "5"})
    assert isinstance(query, MonitoringQuery)
    assert query.filters.mode == "smart"
    assert query.limit == 5


# --- Polling parameters: after, sort, detail ------------------------------------------------------


AFTER_RANGE = "0부터 2147483647까지의 정수여야 합니다."


def test_polling_defaults() -> None:
    query = load()
    assert (query.after, query.sort, query.detail) == (None, "asc", False)


@pytest.mark.parametrize(
    ("raw", "after"), [("0", 0), ("1", 1), ("007", 7), ("2147483647", 2_147_483_647)]
)
def test_after(raw: str, after: int) -> None:
    query = load(("after", raw))
    assert query.after == after
    assert query.page == 1


@pytest.mark.parametrize("raw", ["-1", "2147483648", "abc", "1.5", " 1", FULLWIDTH_TWO, "9" * 5000])
def test_after_refused(raw: str) -> None:
    assert errors(("after", raw)) == {"after": [AFTER_RANGE]}


@pytest.mark.parametrize(
    ("pairs", "after", "page"),
    [
        ((("after", "5"), ("page", "2")), 5, 2),
        ((("after", "0"), ("page", "1")), 0, 1),
        ((("page", "1"), ("after", "9")), 9, 1),
    ],
)
def test_after_with_page_is_a_page_after_the_cursor(
    pairs: tuple[tuple[str, str], ...], after: int, page: int
) -> None:
    query = load(*pairs)
    assert (query.after, query.page) == (after, page)


def test_after_with_an_empty_page() -> None:
    assert load(("after", "5"), ("page", "")).after == 5
    assert load(("after", ""), ("page", "3")).page == 3


@pytest.mark.parametrize(
    ("raw", "sort"), [("asc", "asc"), ("desc", "desc"), ("DESC", "desc"), (" Asc ", "asc")]
)
def test_sort(raw: str, sort: str) -> None:
    assert load(("sort", raw)).sort == sort


@pytest.mark.parametrize("raw", ["up", "ascending", "descending", "-1", "a sc"])
def test_sort_refused(raw: str) -> None:
    assert errors(("sort", raw)) == {"sort": ["asc, desc 중 하나여야 합니다."]}


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("0", False),
    ],
)
def test_detail(raw: str, detail: bool) -> None:
    assert load(("detail", raw)).detail is detail


@pytest.mark.parametrize("raw", ["yes", "no", "on", "2", "t", "truee"])
def test_detail_refused(raw: str) -> None:
    assert errors(("detail", raw)) == {"detail": ["true, false 중 하나여야 합니다."]}


def test_polling_parameters_with_the_others() -> None:
    query = load(
        ("after", "10"), ("limit", "50"), ("sort", "DESC"), ("detail", "1"), ("mode", "FULL")
    )
    assert (query.after, query.limit, query.sort, query.detail) == (10, 50, "desc", True)
    assert query.filters == JobFilters(mode="full")


# --- The parser validates each distinct valid query string once, in a bounded cache ---------


def cached_queries() -> dict[tuple[object, ...], object]:
    parsed: dict[tuple[object, ...], object] = blp.ARGUMENTS_PARSER._parsed
    return parsed


def test_a_repeated_query_is_served_from_the_cache(client: FlaskClient) -> None:
    cached_queries().clear()
    first = client.get(JOB_URL + "bulk-data?limit=5&page=2", headers=bearer())
    (entry,) = cached_queries().values()
    second = client.get(JOB_URL + "bulk-data?limit=5&page=2", headers=bearer())
    assert list(cached_queries().values()) == [entry]
    assert first.get_json()["data"] == second.get_json()["data"]
    assert second.get_json()["data"]["job"]["log"] == [f"line {n}" for n in range(241, 246)]


def test_invalid_queries_are_not_kept(client: FlaskClient) -> None:
    cached_queries().clear()
    for _ in range(2):
        response = client.get(JOB_URL + "1?mode=weekly", headers=bearer())
        assert response.status_code == 400
        assert response.get_json()["details"] == {
            "mode": ["full, increment, smart 중 하나여야 합니다."]
        }
    assert cached_queries() == {}


def test_the_cache_is_bounded(client: FlaskClient) -> None:
    cached_queries().clear()
    for n in range(PARSED_QUERIES + 3):
        assert client.get(f"{JOB_URL}1?_={n}", headers=bearer()).status_code == 200
    assert 0 < len(cached_queries()) <= PARSED_QUERIES
