"""What each trick of the request path buys: the same request with the trick and without it.

make bench runs it (BENCH_CASES=tricks alone), as: python bench/tricks.py --hot ID --wall IDS
with the service's settings in the environment (DATABASE_URL, ZDM_JWT_SECRET) and the token in
BENCH_TOKEN. It builds the app of the checkout on PYTHONPATH and calls it in this process as
WSGI (no gunicorn, no socket), again and again, on the hot job (case B, a 200 from the cache)
and on the wall's polls (case C, 304s), and prints as JSON the CPU microseconds a request took
with each trick and without it, one figure per round (the two arms taken in alternating chunks
within the round, each arm's figure its fastest chunk). Without a trick, the trick is replaced
in this process only, by what the code would do without it:

- envelope: envelope.success's f-string around the payload encoded once -> Flask's jsonify of
  the envelope over the payload (kept unencoded in the memo);
- memo: the bodies and headers memoised per cache entry (entry.memo, polling.decide's memo) ->
  made for every request;
- parser: QueryParser.parse's memo of each distinct query string -> webargs' parse every time;
- ensure_sync: SyncFlask.ensure_sync -> Flask's, which asks inspect about every hook and view;
- all four at once.

The cache is renewed before each measure, and answers every request of it (its max age is
longer than a measure): what is measured is a request the cache answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from types import MethodType
from typing import Any

from flask import Flask, Response, jsonify
from webargs.flaskparser import FlaskParser
from werkzeug.test import EnvironBuilder

from zdm_monitor import create_app, state
from zdm_monitor.api import monitoring
from zdm_monitor.api.context import request_id
from zdm_monitor.api.envelope import SUCCESS_MESSAGE, timestamp
from zdm_monitor.api.schemas import QueryParser
from zdm_monitor.data.cache import Entry, SnapshotCache

JOB = "/api/backups/monitoring/job/"
POLL = "?after={cursor}&limit=50&detail=true"  # the wall's poll, as bench/run.py makes it
WARM_UP = 50  # fills the renewed cache and the memos: each wall job is read once
CHUNKS = 10
Environ = dict[str, Any]
Without = Callable[[Flask], AbstractContextManager[None]]


@contextmanager
def replaced(owner: Any, **attributes: Any) -> Iterator[None]:
    """Set the owner's attributes (a module's, a class's, an object's), then put them back."""
    missing = object()
    saved = {name: vars(owner).get(name, missing) for name in attributes}
    for name, value in attributes.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def jsonify_success(
    data: Any = None,
    *,
    message: str = SUCCESS_MESSAGE,
    headers: dict[str, str] | None = None,
    encoded: Any = None,
) -> Response:
    """The success envelope as Flask's jsonify makes it, over the payload itself."""
    response = jsonify(
        {
            "success": True,
            "requestID": request_id(),
            "data": data if encoded is None else encoded,
            "message": message,
            "timestamp": timestamp(),
        }
    )
    response.headers.update(headers or {})
    return response


def without_envelope(app: Flask) -> AbstractContextManager[None]:
    # The memo then keeps the payload, not its JSON: jsonify encodes it with the envelope.
    return replaced(monitoring, success=jsonify_success, encode=lambda payload: payload)


def without_memo(app: Flask) -> AbstractContextManager[None]:
    through = monitoring.read_through

    def read_through(*args: Any, **kwargs: Any) -> Entry:
        """The cache's entry, with an empty memo of its own: nothing made is kept."""
        entry = through(*args, **kwargs)
        return Entry(entry.key, entry.snapshot, entry.read_at)

    return replaced(monitoring, read_through=read_through)


def without_parser_memo(app: Flask) -> AbstractContextManager[None]:
    return replaced(QueryParser, parse=FlaskParser.parse)


def without_sync_flask(app: Flask) -> AbstractContextManager[None]:
    return replaced(app, ensure_sync=MethodType(Flask.ensure_sync, app))


@contextmanager
def without_all(app: Flask) -> Iterator[None]:
    with ExitStack() as stack:
        for without in (without_envelope, without_memo, without_parser_memo, without_sync_flask):
            stack.enter_context(without(app))
        yield


TRICKS: dict[str, Without] = {
    "envelope": without_envelope,
    "memo": without_memo,
    "parser": without_parser_memo,
    "ensure_sync": without_sync_flask,
    "all four": without_all,
}


def environ(path: str, token: str, etag: str | None = None) -> Environ:
    headers = [("Authorization", f"Bearer {token}")]
    if etag:
        headers.append(("If-None-Match", etag))
    built = EnvironBuilder(path=path, headers=headers, environ_overrides={"REMOTE_ADDR": "::1"})
    return built.get_environ()


def call(app: Flask, request: Environ) -> tuple[int, dict[str, str], bytes]:
    """One request through the WSGI interface: status, headers, body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    chunks = app(dict(request), start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    status, headers = started[0]
    return int(status[:3]), dict(headers), body


def wall_polls(app: Flask, token: str, jobs: list[int]) -> list[Environ]:
    """Each wall job's cursor poll with its current ETag: 304s."""
    polls = []
    for job in jobs:
        _, first, _ = call(app, environ(f"{JOB}{job}?limit=50&detail=true", token))
        path = JOB + str(job) + POLL.format(cursor=first["X-Log-Cursor"])
        _, headers, _ = call(app, environ(path, token))
        polls.append(environ(path, token, headers["ETag"]))
    return polls


def comparable(body: bytes) -> Any:
    """A body without what differs between any two answers (its request ID and time)."""
    if not body:
        return None
    data = json.loads(body)
    return {key: value for key, value in data.items() if key not in ("requestID", "timestamp")}


def cpu_seconds(app: Flask, requests: list[Environ], count: int, expect: tuple[int, Any]) -> float:
    """CPU seconds of count requests (taken in turn) on a renewed cache, after a warm-up whose
    answers must all be the expected status and body."""
    app_state = state.of(app)
    app_state.cache = SnapshotCache(app_state.settings, app_state.database.slots)
    for n in range(WARM_UP):
        status, _, body = call(app, requests[n % len(requests)])
        if (status, comparable(body)) != expect:
            raise SystemExit(f"unexpected answer: {status} {body[:200]!r}, not {expect}")
    started = time.process_time()
    for n in range(count):
        call(app, requests[n % len(requests)])
    return time.process_time() - started


def with_and_without(
    app: Flask, requests: list[Environ], count: int, expect: tuple[int, Any], without: Without
) -> tuple[float, float]:
    """CPU microseconds a request with the trick and without it: count requests each, in CHUNKS
    chunks that alternate which goes first, so that both see the same moments of the machine;
    each arm's figure is its fastest chunk, the one the machine's other work disturbed least."""
    spent: dict[str, list[float]] = {"with": [], "without": []}
    arms: list[tuple[str, Without]] = [("with", lambda app: nullcontext()), ("without", without)]
    size = max(1, count // CHUNKS)
    for chunk in range(CHUNKS):
        for arm, context in arms if chunk % 2 == 0 else arms[::-1]:
            with context(app):
                spent[arm].append(cpu_seconds(app, requests, size, expect) / size * 1e6)
    return min(spent["with"]), min(spent["without"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hot", type=int, required=True, help="the hot job's ID (case B)")
    parser.add_argument("--wall", required=True, help="the wall's job IDs, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000, help="requests a measure")
    args = parser.parse_args()
    token = os.environ["BENCH_TOKEN"]
    app = create_app()
    state.start(app)
    hot = [environ(f"{JOB}{args.hot}", token)]
    cases = {"B": hot, "C": wall_polls(app, token, [int(j) for j in args.wall.split(",")])}
    # What each case answers with every trick: each request of a measure must answer the same.
    expected = {}
    for case, requests in cases.items():
        status, _, body = call(app, requests[0])
        expected[case] = (status, comparable(body))
    assert expected["B"][0] == 200 and expected["C"] == (304, None), expected
    measures: dict[str, dict[str, dict[str, list[float]]]] = {
        case: {trick: {"with": [], "without": []} for trick in TRICKS} for case in cases
    }
    for round_ in range(args.rounds):
        print(f"tricks: round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for case, requests in cases.items():
            for trick, without in TRICKS.items():
                pair = with_and_without(app, requests, args.requests, expected[case], without)
                measures[case][trick]["with"].append(pair[0])
                measures[case][trick]["without"].append(pair[1])
    state.close(app)
    print(json.dumps({"requests": args.requests, "measures": measures}))


if __name__ == "__main__":
    main()
