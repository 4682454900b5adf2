"""What an app holds for its requests, reached through typed accessors rather than string keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from flask import Flask, current_app

from .config import Settings
from .data.cache import SnapshotCache
from .data.database import Database

KEY = "zdm_monitor"


@dataclass
class State:
    settings: Settings
    database: Database
    cache: SnapshotCache
    # Set from the moment the worker is told to stop: /readyz then answers 503.
    draining: bool = False
    # The token the live page offers; only the development stack sets one.
    offered_token: str | None = None


def install(app: Flask, settings: Settings) -> None:
    database = Database(settings)
    app.extensions[KEY] = State(settings, database, SnapshotCache(settings, database.slots))


def of(app: Flask | None = None) -> State:
    """The state of the given app, or of the one serving the current request."""
    return cast(State, (app or current_app).extensions[KEY])


def settings() -> Settings:
    return of().settings


def database() -> Database:
    return of().database


def cache() -> SnapshotCache:
    return of().cache


def start(app: Flask, threads: int | None = None) -> None:
    """Start the watchdog, the replica monitor and the cache's refresher, and size the slots for
    gunicorn's threads (None: the pool's size), in each worker after fork; an app never started
    refuses to read."""
    of(app).database.start(threads)
    of(app).cache.start(app.app_context)


def serves(app: object) -> bool:
    """Whether the app is this service's (gunicorn's settings may run another: bench/ceiling.py)."""
    return isinstance(app, Flask) and KEY in app.extensions


def start_draining(app: Flask) -> None:
    """Have /readyz answer 503 from now on (gunicorn's worker got SIGTERM)."""
    of(app).draining = True


def close(app: Flask) -> None:
    """Stop the cache's refresher and close the app's database connections (the worker is
    exiting)."""
    of(app).cache.stop()
    of(app).database.close()


def release_connection(exc: BaseException | None = None) -> None:
    """Give the request's connection back at teardown."""
    of().database.release(exc)
