"""Each distinct valid query string is validated once per process, and the cache stays bounded."""

from __future__ import annotations

from conftest import JOB_URL, bearer
from flask.testing import FlaskClient

from zdm_monitor.monitoring import blp
from zdm_monitor.schemas import PARSED_QUERIES


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
