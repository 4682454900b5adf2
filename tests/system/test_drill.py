"""The fault drills, shortened: PostgreSQL stops under load, and a worker is killed under load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.drill import database_outage, soak, start_stack, worker_kill

from zdm_devstack.stack import Stack

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("drill")))
    yield running
    running.stop()


def test_database_outage_gives_503s_then_recovers_on_its_own(stack: Stack) -> None:
    result = database_outage(stack, seconds=9, outage=3, threads=6)
    assert result["other"] == {}, result  # no 500s, nothing but 200 and 503
    assert result["connection errors"] == {}, result
    assert isinstance(result["503"], int) and result["503"] > 0, result  # the outage was seen
    assert isinstance(result["recovery s"], float) and result["recovery s"] < 2.0, result
    assert result["ok"] is True


def test_a_killed_worker_is_replaced_and_costs_at_most_its_requests(stack: Stack) -> None:
    result = worker_kill(stack, seconds=6, threads=6)
    assert result["replaced"] is True, result
    assert isinstance(result["failed"], int) and result["failed"] <= 6, result
    assert isinstance(result["200"], int) and result["200"] > 100, result


def test_a_mixed_workload_gets_exactly_the_expected_answers(stack: Stack) -> None:
    result = soak(stack, requests=4000, threads=6, warmup=1000)
    assert result["5xx"] == 0, result
    assert result["unexpected"] == {}, result
    answers = result["answers"]
    assert isinstance(answers, dict) and set(answers) == {"200", "400", "401", "404"}, result
