"""Settings from the environment, checked once at start-up."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn

from .environment import ConfigError, metrics_folder, setting

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# RFC 7518 3.2: an HMAC key shorter than the hash output weakens the signature.
MIN_SECRET_BYTES = 32
ORIGIN_PATTERN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)
# Replica URLs are separated by spaces or commas; a comma inside one (libpq's host1,host2) is not.
URL_SEPARATOR = re.compile(r"\s+|,\s*(?=postgres(?:ql)?://)")

# Settings of earlier releases that are read no more, each with why: a set one is logged at start.
OBSOLETE = {
    "DATABASE_LISTEN_URL": "the snapshot cache no longer listens for change notifications: "
    "answers age out after ZDM_CACHE_MAX_AGE_MS instead (docs/performance.md)",
    "GUNICORN_WORKER_CLASS": "the worker is gunicorn's gthread, whose threads the service "
    "counts on to keep one free for the probes (docs/reliability.md)",
}


Getter = Callable[[str], str | None]


@dataclass(frozen=True)
class Settings:
    """Each field is named for its variable, lower case and without ZDM_ (jwt_key: either key)."""

    database_url: str
    database_replica_urls: tuple[str, ...]
    replica_max_lag_s: float
    jwt_key: str
    jwt_algorithms: tuple[str, ...]
    jwt_audience: str | None
    jwt_issuer: str | None
    jwt_leeway: int
    timezone: ZoneInfo
    db_connect_timeout: int
    db_statement_timeout_ms: int
    db_pool_size: int
    cache_size: int
    cache_max_age_ms: int
    cache_max_bytes: int
    proxy_count: int
    cors_origins: frozenset[str]
    stall_seconds: int
    poll_active_seconds: int
    poll_waiting_seconds: int


def _whole(value: str, least: int = 0) -> int:
    number = int(value)
    if number < least:
        raise ValueError
    return number


_positive = partial(_whole, least=1)


def _origins(value: str) -> frozenset[str]:
    """Comma-separated origins (scheme://host[:port]) or *; empty means no cross-origin calls."""
    origins = frozenset(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not ORIGIN_PATTERN.fullmatch(origin):
            raise ValueError
    return origins


SECONDS = "a whole number of seconds"
ORIGINS = "a comma-separated list of origins such as https://ops.example"
# The settings read by one function each, in the order their problems are told: the default,
# the function, and what a good value is.
PLAIN: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "ZDM_JWT_LEEWAY": ("30", _whole, SECONDS),
    "ZDM_TIMEZONE": ("UTC", ZoneInfo, "an IANA time zone name such as Asia/Seoul"),
    "ZDM_DB_CONNECT_TIMEOUT": ("3", _whole, SECONDS),
    "ZDM_DB_STATEMENT_TIMEOUT_MS": ("5000", _whole, "a whole number of milliseconds"),
    "ZDM_DB_POOL_SIZE": ("8", _whole, "a whole number"),
    "ZDM_CACHE_SIZE": ("4096", _whole, "a whole number of snapshots (0: off)"),
    "ZDM_CACHE_MAX_AGE_MS": ("1000", _whole, "a whole number of milliseconds (0: off)"),
    "ZDM_CACHE_MAX_BYTES": (str(64 * 2**20), _whole, "a whole number of bytes (0: off)"),
    "ZDM_PROXY_COUNT": ("1", _whole, "a whole number of proxies"),
    "ZDM_CORS_ORIGINS": ("", _origins, ORIGINS),
    "ZDM_STALL_SECONDS": ("300", _positive, f"{SECONDS} >= 1"),
    "ZDM_POLL_ACTIVE_SECONDS": ("5", _positive, f"{SECONDS} >= 1"),
    "ZDM_POLL_WAITING_SECONDS": ("60", _positive, f"{SECONDS} >= 1"),
}


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and check every setting, reporting all problems at once."""
    problems: list[str] = []
    get: Getter = partial(setting, env, problems=problems)
    url = get("DATABASE_URL")
    if url is None:
        problems.append("DATABASE_URL is not set: give the ZDM PostgreSQL URL (postgresql://...).")
    else:
        try:
            parse_dsn(url)
        except ProgrammingError:  # never its text or the value: they hold the password
            problems.append(
                "DATABASE_URL is not a PostgreSQL URL (postgresql://...) or key=value connection "
                "string; quotes around it are part of the value only where no reader removed them."
            )
    metrics_folder(env, problems)
    values: dict[str, Any] = {"database_url": url}
    values["database_replica_urls"], values["replica_max_lag_s"] = _replicas(get, problems)
    values["jwt_key"], values["jwt_algorithms"] = _jwt_key(get, problems)
    for name, (default, convert, expected) in PLAIN.items():
        raw = get(name) or default
        try:
            values[name.removeprefix("ZDM_").lower()] = convert(raw)
        except (ValueError, ZoneInfoNotFoundError):
            problems.append(f"{name}={raw!r} is not {expected}.")
    if values.get("db_pool_size") == 0:
        problems.append("ZDM_DB_POOL_SIZE must be at least 1.")
    values["jwt_audience"], values["jwt_issuer"] = get("ZDM_JWT_AUDIENCE"), get("ZDM_JWT_ISSUER")
    if problems:
        raise ConfigError(problems)
    # A poll sooner than an answer may be old would mostly be answered from memory.
    slowest = math.ceil(values["cache_max_age_ms"] / 1000)
    for name in ("poll_active_seconds", "poll_waiting_seconds"):
        values[name] = max(values[name], slowest)
    return Settings(**values)


def token_key(env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The token verification key and its algorithms, checked as load_settings checks them."""
    problems: list[str] = []
    key, algorithms = _jwt_key(partial(setting, env, problems=problems), problems)
    if problems:
        raise ConfigError(problems)
    return key, algorithms


def _replicas(get: Getter, problems: list[str]) -> tuple[tuple[str, ...], float]:
    """Read the replicas' URLs and the lag beyond which a replica is skipped."""
    urls = tuple(u for u in URL_SEPARATOR.split(get("DATABASE_REPLICA_URLS") or "") if u)
    wrong = [u for u in urls if not u.startswith(("postgresql://", "postgres://"))]
    if wrong:
        problems.append(
            f"DATABASE_REPLICA_URLS holds {len(wrong)} value(s) that are not postgresql:// URLs."
        )
    lag_text = get("ZDM_REPLICA_MAX_LAG_S") or "5"
    try:
        max_lag = float(lag_text)
    except ValueError:
        max_lag = 0.0
    if not 0 < max_lag < math.inf:
        problems.append(f"ZDM_REPLICA_MAX_LAG_S={lag_text!r} is not a number of seconds above 0.")
    return urls, max_lag


def _jwt_key(get: Getter, problems: list[str]) -> tuple[str, tuple[str, ...]]:
    """Pick the verification key and its algorithms; never mix HMAC and public keys."""
    secret = get("ZDM_JWT_SECRET")
    public_key = get("ZDM_JWT_PUBLIC_KEY")
    names = get("ZDM_JWT_ALGORITHMS")
    if secret and public_key:
        problems.append("Set ZDM_JWT_SECRET or ZDM_JWT_PUBLIC_KEY, not both.")
        return "", ()
    if not secret and not public_key:
        problems.append(
            "No token key: set ZDM_JWT_SECRET (HS256, at least 32 bytes) or "
            "ZDM_JWT_PUBLIC_KEY with ZDM_JWT_ALGORITHMS (RS256 or ES256)."
        )
        return "", ()
    allowed, default = (HMAC_ALGORITHMS, "HS256") if secret else (PUBLIC_KEY_ALGORITHMS, "RS256")
    algorithms = tuple(a.strip() for a in (names or default).split(",") if a.strip())
    wrong = [a for a in algorithms if a not in allowed]
    if wrong or not algorithms:
        kind = "ZDM_JWT_SECRET" if secret else "ZDM_JWT_PUBLIC_KEY"
        problems.append(
            f"ZDM_JWT_ALGORITHMS={names!r} does not fit {kind}: "
            f"choose from {', '.join(sorted(allowed))}."
        )
        return "", ()
    if secret:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            problems.append(f"ZDM_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long.")
        return secret, algorithms
    assert public_key is not None
    pem = _read_pem(public_key, problems)
    for name in algorithms:
        try:
            key = jwt.get_algorithm_by_name(name).prepare_key(pem)
        except (jwt.InvalidKeyError, ValueError, TypeError):
            key = None
        # A private key would load too, then fail every verification: refuse it here.
        if not hasattr(key, "verify"):
            problems.append(f"ZDM_JWT_PUBLIC_KEY is not a public key usable with {name}.")
    return pem, algorithms


def _read_pem(value: str, problems: list[str]) -> str:
    """Accept the PEM text itself or the absolute path of a file holding it."""
    if value.startswith("-----BEGIN"):
        return value
    if not os.path.isabs(value):
        problems.append(
            f"ZDM_JWT_PUBLIC_KEY={value!r} is neither PEM text nor an absolute path: a relative "
            "one would be read from whatever folder the service starts in."
        )
        return ""
    try:
        return Path(value).read_text()
    except OSError:
        problems.append(f"ZDM_JWT_PUBLIC_KEY={value!r} is neither PEM text nor a readable file.")
        return ""
