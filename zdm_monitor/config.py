"""Settings from the environment, checked once at start-up."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# RFC 7518 3.2: an HMAC key shorter than the hash output weakens the signature.
MIN_SECRET_BYTES = 32
ORIGIN_PATTERN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)

T = TypeVar("T")


# Replica URLs are separated by spaces or commas; a comma inside one (libpq's host1,host2) is not.
URL_SEPARATOR = re.compile(r"\s+|,\s*(?=postgres(?:ql)?://)")
DEFAULT_MAX_LAG_S = "5"

# The files prometheus_client writes in PROMETHEUS_MULTIPROC_DIR: <kind>_<pid>.db.
METRICS_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_[0-9]+\.db")

# Settings of earlier releases that are read no more, each with why: a set one is logged at start.
OBSOLETE = {
    "DATABASE_LISTEN_URL": "the snapshot cache no longer listens for change notifications: "
    "answers age out after ZDM_CACHE_MAX_AGE_MS instead (docs/performance.md)",
    "GUNICORN_WORKER_CLASS": "the worker is gunicorn's gthread, whose threads the service "
    "counts on to keep one free for the probes (docs/reliability.md)",
}


class ConfigError(Exception):
    """The environment does not describe a service that can start."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("Configuration is not valid:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
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


def _int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def _positive(value: str) -> int:
    number = _int(value)
    if number == 0:
        raise ValueError
    return number


def _origins(value: str) -> frozenset[str]:
    """Comma-separated origins (scheme://host[:port]) or *; empty means no cross-origin calls."""
    origins = frozenset(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not ORIGIN_PATTERN.fullmatch(origin):
            raise ValueError
    return origins


def _zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError from exc


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and check every setting, reporting all problems at once."""
    problems: list[str] = []
    get = _getter(env, problems)

    def parse(name: str, default: str, convert: Callable[[str], T], expected: str) -> T | None:
        raw = get(name, default) or default
        try:
            return convert(raw)
        except ValueError:
            problems.append(f"{name}={raw!r} is not {expected}.")
            return None

    database_url = get("DATABASE_URL")
    if database_url is None:
        problems.append("DATABASE_URL is not set: give the ZDM PostgreSQL URL (postgresql://...).")
    elif not _connection_string(database_url):
        # Never the value itself: it holds the password.
        problems.append(
            "DATABASE_URL is not a PostgreSQL URL (postgresql://...) or key=value connection "
            "string; quotes around it are part of the value only where no reader removed them."
        )
    metrics_folder(env, problems)
    replica_urls, max_lag = _replicas(get, problems)

    key, algorithms = _jwt_key(get, problems)
    leeway = parse("ZDM_JWT_LEEWAY", "30", _int, "a whole number of seconds")
    timezone = parse("ZDM_TIMEZONE", "UTC", _zone, "an IANA time zone name such as Asia/Seoul")
    connect_timeout = parse("ZDM_DB_CONNECT_TIMEOUT", "3", _int, "a whole number of seconds")
    statement_timeout = parse(
        "ZDM_DB_STATEMENT_TIMEOUT_MS", "5000", _int, "a whole number of milliseconds"
    )
    pool_size = parse("ZDM_DB_POOL_SIZE", "4", _int, "a whole number")
    cache_size = parse("ZDM_CACHE_SIZE", "4096", _int, "a whole number of snapshots (0: off)")
    cache_max_age_ms = parse(
        "ZDM_CACHE_MAX_AGE_MS", "1000", _int, "a whole number of milliseconds (0: off)"
    )
    cache_max_bytes = parse(
        "ZDM_CACHE_MAX_BYTES", str(64 * 2**20), _int, "a whole number of bytes (0: off)"
    )
    proxy_count = parse("ZDM_PROXY_COUNT", "1", _int, "a whole number of proxies")
    cors_origins = parse(
        "ZDM_CORS_ORIGINS",
        "",
        _origins,
        "a comma-separated list of origins such as https://ops.example",
    )
    stall = parse("ZDM_STALL_SECONDS", "300", _positive, "a whole number of seconds >= 1")
    poll_active = parse("ZDM_POLL_ACTIVE_SECONDS", "5", _positive, "a whole number of seconds >= 1")
    poll_waiting = parse(
        "ZDM_POLL_WAITING_SECONDS", "60", _positive, "a whole number of seconds >= 1"
    )
    if pool_size == 0:
        problems.append("ZDM_DB_POOL_SIZE must be at least 1.")
    audience, issuer = get("ZDM_JWT_AUDIENCE"), get("ZDM_JWT_ISSUER")

    if problems:
        raise ConfigError(problems)
    assert database_url is not None and leeway is not None and timezone is not None
    assert connect_timeout is not None and statement_timeout is not None and pool_size
    assert proxy_count is not None and cors_origins is not None and cache_size is not None
    assert cache_max_age_ms is not None and cache_max_bytes is not None
    assert stall and poll_active and poll_waiting
    # A poll sooner than an answer may be old would mostly be answered from memory.
    slowest = math.ceil(cache_max_age_ms / 1000)
    return Settings(
        database_url=database_url,
        database_replica_urls=replica_urls,
        replica_max_lag_s=max_lag,
        jwt_key=key,
        jwt_algorithms=algorithms,
        jwt_audience=audience,
        jwt_issuer=issuer,
        jwt_leeway=leeway,
        timezone=timezone,
        db_connect_timeout=connect_timeout,
        db_statement_timeout_ms=statement_timeout,
        db_pool_size=pool_size,
        cache_size=cache_size,
        cache_max_age_ms=cache_max_age_ms,
        cache_max_bytes=cache_max_bytes,
        proxy_count=proxy_count,
        cors_origins=cors_origins,
        stall_seconds=stall,
        poll_active_seconds=max(poll_active, slowest),
        poll_waiting_seconds=max(poll_waiting, slowest),
    )


def setting(env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    """A setting's value with surrounding blanks removed, None when it is not set.

    The one rule for every variable of the service, its gunicorn settings and its commands: set
    but empty or blank is a mistake (an environment file's `NAME=`), refused with one line
    rather than read as a default.
    """
    value = env.get(name)
    if value is None:
        return None
    if not value.strip():
        problems.append(
            f"{name} is set but empty: give it a value, or remove it to leave it unset."
        )
        return None
    return value.strip()


# Every variable of the service, its gunicorn settings and its commands: these, and ZDM_*,
# GUNICORN_*.
NAMES = ("DATABASE_URL", "DATABASE_REPLICA_URLS", "PORT", "PROMETHEUS_MULTIPROC_DIR")


def blank_settings(env: Mapping[str, str]) -> list[str]:
    """The refusals of every variable of ours that is set but empty or blank."""
    problems: list[str] = []
    for name in sorted(env):
        if name.startswith(("ZDM_", "GUNICORN_")) or name in NAMES:
            setting(env, name, problems)
    return problems


def refuse(problems: list[str]) -> None:
    """Stop a command or a start-up with one line per problem, and exit status 1."""
    if problems:
        raise SystemExit("\n".join(f"zdm-monitor: {problem}" for problem in problems))


def metrics_folder(env: Mapping[str, str], problems: list[str]) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, where the workers' metrics files go: an absolute path or unset.

    prometheus_client sums every *.db file of the folder: one of someone else's there would
    break /metrics, so such a folder is refused too (nothing in it is touched).
    """
    folder = setting(env, "PROMETHEUS_MULTIPROC_DIR", problems)
    if folder is None:
        return None
    where = Path(folder)
    if not where.is_absolute():
        problems.append(
            f"PROMETHEUS_MULTIPROC_DIR={folder!r} is not an absolute path: name the folder for "
            "the workers' metrics files (/run/zdm-monitor/metrics), or unset it for a private "
            "temporary one."
        )
    elif where.exists() and not where.is_dir():
        problems.append(f"PROMETHEUS_MULTIPROC_DIR={folder!r} is not a folder.")
    elif foreign := sorted(
        p.name for p in where.glob("*.db") if not METRICS_FILE.fullmatch(p.name)
    ):
        problems.append(
            f"PROMETHEUS_MULTIPROC_DIR={folder!r} holds {', '.join(foreign)}, not metrics files "
            "of ours: give the metrics a folder of their own."
        )
    else:
        return folder
    return None


def _connection_string(url: str) -> bool:
    try:
        parse_dsn(url)
    except ProgrammingError:  # its text holds the value, password and all
        return False
    return True


def _getter(env: Mapping[str, str], problems: list[str]) -> Callable[..., str | None]:
    """Each setting read by `setting`'s rule, with a default for one that is not set."""

    def get(name: str, default: str | None = None) -> str | None:
        value = setting(env, name, problems)
        return default if value is None else value

    return get


def token_key(env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The token verification key and its algorithms, checked as load_settings checks them."""
    problems: list[str] = []
    key, algorithms = _jwt_key(_getter(env, problems), problems)
    if problems:
        raise ConfigError(problems)
    return key, algorithms


def _replicas(
    get: Callable[[str], str | None], problems: list[str]
) -> tuple[tuple[str, ...], float]:
    """Read the replicas' URLs and the lag beyond which a replica is skipped."""
    raw = get("DATABASE_REPLICA_URLS") or ""
    urls = tuple(u for u in URL_SEPARATOR.split(raw) if u)
    wrong = [u for u in urls if not u.startswith(("postgresql://", "postgres://"))]
    if wrong:
        problems.append(
            f"DATABASE_REPLICA_URLS holds {len(wrong)} value(s) that are not postgresql:// URLs."
        )
    lag_text = get("ZDM_REPLICA_MAX_LAG_S") or DEFAULT_MAX_LAG_S
    try:
        max_lag = float(lag_text)
    except ValueError:
        max_lag = 0.0
    if not 0 < max_lag < float("inf"):
        problems.append(f"ZDM_REPLICA_MAX_LAG_S={lag_text!r} is not a number of seconds above 0.")
    return urls, max_lag


def _jwt_key(get: Callable[[str], str | None], problems: list[str]) -> tuple[str, tuple[str, ...]]:
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
