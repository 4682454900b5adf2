"""load_settings: defaults, every bad value named, all problems at once; create_app fails fast."""

from __future__ import annotations

import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.api import SECRET
from support.logs import records

from zdm_monitor import create_app, state
from zdm_monitor.config import Settings, load_settings
from zdm_monitor.environment import ConfigError

DB = "postgresql://zdm@127.0.0.1:5432/zdm"
BASE = {"DATABASE_URL": DB, "ZDM_JWT_SECRET": SECRET}


def public_pem(kind: str = "rsa") -> str:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return public_pem("rsa")


@pytest.fixture(scope="module")
def ec_pem() -> str:
    return public_pem("ec")


def public(pem: str, **env: str) -> dict[str, str]:
    return {"DATABASE_URL": DB, "ZDM_JWT_PUBLIC_KEY": pem, **env}


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return str(info.value)


# --- Defaults -----------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert isinstance(settings, Settings)
    assert settings.database_url == DB
    assert settings.jwt_key == SECRET
    assert settings.jwt_algorithms == ("HS256",)
    assert settings.jwt_audience is None
    assert settings.jwt_issuer is None
    assert settings.jwt_leeway == 30
    assert settings.timezone == ZoneInfo("UTC")
    assert settings.db_connect_timeout > 0
    assert settings.db_statement_timeout_ms > 0
    assert settings.db_pool_size >= 1
    assert settings.proxy_count == 1


def test_empty_or_blank_values_are_refused_each_by_name() -> None:
    """An environment file's `NAME=` is a mistake to name, not a default to guess."""
    blank = {"ZDM_JWT_LEEWAY": "", "ZDM_TIMEZONE": "  ", "ZDM_JWT_AUDIENCE": "\t"}
    lines = config_error({**BASE, **blank}).splitlines()[1:]
    assert lines == [
        f"  - {name} is set but empty: give it a value, or remove it to leave it unset."
        for name in ("ZDM_JWT_LEEWAY", "ZDM_TIMEZONE", "ZDM_JWT_AUDIENCE")
    ]


def test_unset_values_take_their_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.jwt_leeway == 30
    assert settings.timezone == ZoneInfo("UTC")
    assert settings.jwt_audience is None


def test_surrounding_blanks_are_not_part_of_a_value() -> None:
    settings = load_settings({**BASE, "ZDM_TIMEZONE": " Asia/Seoul\t", "ZDM_JWT_LEEWAY": "5 "})
    assert settings.timezone == ZoneInfo("Asia/Seoul")
    assert settings.jwt_leeway == 5


@pytest.mark.parametrize(
    "url",
    ['"postgresql://zdm:pw@db/zdm"', "'postgresql://zdm:pw@db/zdm'", "zdm:pw@db/zdm"],
    ids=["double quotes kept", "single quotes kept", "not a url"],
)
def test_a_database_url_libpq_cannot_read_is_refused_without_its_password(url: str) -> None:
    message = config_error({**BASE, "DATABASE_URL": url})
    assert "DATABASE_URL is not a PostgreSQL URL" in message
    assert "pw" not in message


@pytest.mark.parametrize(
    "url",
    ["postgresql://zdm@db:5432/zdm?sslmode=require&application_name=x", "host=/run/pg dbname=zdm"],
)
def test_urls_and_key_value_strings_are_accepted(url: str) -> None:
    assert load_settings({**BASE, "DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize("folder", ["", " ", "metrics", "./metrics"])
def test_metrics_folder_must_be_an_absolute_path(folder: str) -> None:
    message = config_error({**BASE, "PROMETHEUS_MULTIPROC_DIR": folder})
    assert "PROMETHEUS_MULTIPROC_DIR" in message


def test_a_relative_public_key_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rsa_pem: str
) -> None:
    (tmp_path / "key.pem").write_text(rsa_pem)
    monkeypatch.chdir(tmp_path)
    message = config_error(public("key.pem"))
    assert "ZDM_JWT_PUBLIC_KEY='key.pem' is neither PEM text nor an absolute path" in message
    assert load_settings(public(str(tmp_path / "key.pem"))).jwt_key == rsa_pem


def test_explicit_values() -> None:
    settings = load_settings(
        {
            **BASE,
            "ZDM_JWT_ALGORITHMS": "HS256, HS512",
            "ZDM_JWT_AUDIENCE": "zdm-monitor",
            "ZDM_JWT_ISSUER": "zdm-api",
            "ZDM_JWT_LEEWAY": "0",
            "ZDM_TIMEZONE": "Asia/Seoul",
            "ZDM_PROXY_COUNT": "0",
        }
    )
    assert settings.jwt_algorithms == ("HS256", "HS512")
    assert settings.jwt_audience == "zdm-monitor"
    assert settings.jwt_issuer == "zdm-api"
    assert settings.jwt_leeway == 0
    assert settings.timezone == ZoneInfo("Asia/Seoul")
    assert settings.proxy_count == 0


def test_load_settings_does_not_read_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZDM_TIMEZONE", "Asia/Seoul")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    settings = load_settings(BASE)
    assert settings.timezone == ZoneInfo("UTC")
    assert settings.database_url == DB


def test_rs256_is_the_public_key_default(rsa_pem: str) -> None:
    settings = load_settings(public(rsa_pem))
    assert settings.jwt_algorithms == ("RS256",)
    assert settings.jwt_key.strip() == rsa_pem.strip()


def test_es256_public_key(ec_pem: str) -> None:
    settings = load_settings(public(ec_pem, ZDM_JWT_ALGORITHMS="ES256"))
    assert settings.jwt_algorithms == ("ES256",)


def test_public_key_from_file(rsa_pem: str, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(rsa_pem)
    settings = load_settings(public(str(path), ZDM_JWT_ALGORITHMS="RS256"))
    assert settings.jwt_key.strip() == rsa_pem.strip()


def test_secret_of_exactly_32_bytes_is_enough() -> None:
    settings = load_settings({"DATABASE_URL": DB, "ZDM_JWT_SECRET": "s" * 32})
    assert settings.jwt_key == "s" * 32


# --- Each bad value names its variable ----------------------------------------------------------


SHORT_SECRET = "s" * 31


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ZDM_JWT_SECRET": SECRET}, "DATABASE_URL"),
        ({"DATABASE_URL": "  ", "ZDM_JWT_SECRET": SECRET}, "DATABASE_URL"),
        ({"DATABASE_URL": DB}, "ZDM_JWT_SECRET"),
        ({"DATABASE_URL": DB, "ZDM_JWT_SECRET": ""}, "ZDM_JWT_SECRET"),
        ({**BASE, "ZDM_JWT_SECRET": SHORT_SECRET}, "ZDM_JWT_SECRET"),
        ({**BASE, "ZDM_JWT_SECRET": "é" * 15}, "ZDM_JWT_SECRET"),  # 30 bytes, 15 characters
        ({**BASE, "ZDM_JWT_ALGORITHMS": "RS256"}, "ZDM_JWT_ALGORITHMS"),
        ({**BASE, "ZDM_JWT_ALGORITHMS": "HS256,RS256"}, "ZDM_JWT_ALGORITHMS"),
        ({**BASE, "ZDM_JWT_ALGORITHMS": "none"}, "ZDM_JWT_ALGORITHMS"),
        ({**BASE, "ZDM_JWT_ALGORITHMS": " , "}, "ZDM_JWT_ALGORITHMS"),
        ({**BASE, "ZDM_TIMEZONE": "Mars/Olympus"}, "ZDM_TIMEZONE"),
        ({**BASE, "ZDM_TIMEZONE": "../../etc/passwd"}, "ZDM_TIMEZONE"),
        ({**BASE, "ZDM_JWT_LEEWAY": "soon"}, "ZDM_JWT_LEEWAY"),
        ({**BASE, "ZDM_JWT_LEEWAY": "-5"}, "ZDM_JWT_LEEWAY"),
        ({**BASE, "ZDM_JWT_LEEWAY": "1.5"}, "ZDM_JWT_LEEWAY"),
        ({**BASE, "ZDM_DB_POOL_SIZE": "0"}, "ZDM_DB_POOL_SIZE"),
        ({**BASE, "ZDM_DB_CONNECT_TIMEOUT": "x"}, "ZDM_DB_CONNECT_TIMEOUT"),
        ({**BASE, "ZDM_PROXY_COUNT": "-1"}, "ZDM_PROXY_COUNT"),
    ],
    ids=[
        "database url missing",
        "database url blank",
        "no key",
        "empty secret",
        "secret 31 bytes",
        "secret 30 utf-8 bytes",
        "rs256 with secret",
        "mixed algorithms with secret",
        "alg none with secret",
        "no algorithm named",
        "unknown timezone",
        "timezone path",
        "leeway not a number",
        "negative leeway",
        "fractional leeway",
        "pool size zero",
        "connect timeout not a number",
        "negative proxy count",
    ],
)
def test_bad_value_names_variable(env: dict[str, str], variable: str) -> None:
    assert variable in config_error(env)


def test_both_secret_and_public_key(rsa_pem: str) -> None:
    message = config_error({**public(rsa_pem), "ZDM_JWT_SECRET": SECRET})
    assert "ZDM_JWT_SECRET" in message
    assert "ZDM_JWT_PUBLIC_KEY" in message


@pytest.mark.parametrize("algorithms", ["HS256", "RS256,HS256", "none"])
def test_hmac_algorithm_with_public_key(rsa_pem: str, algorithms: str) -> None:
    assert "ZDM_JWT_ALGORITHMS" in config_error(public(rsa_pem, ZDM_JWT_ALGORITHMS=algorithms))


@pytest.mark.parametrize(
    "key",
    [
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        "/nonexistent/zdm/key.pem",
        "not a key at all",
    ],
    ids=["garbage pem", "missing file", "plain text"],
)
def test_bad_public_key(key: str) -> None:
    assert "ZDM_JWT_PUBLIC_KEY" in config_error(public(key, ZDM_JWT_ALGORITHMS="RS256"))


def test_public_key_file_without_a_key(tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_text("hello\n")
    assert "ZDM_JWT_PUBLIC_KEY" in config_error(public(str(path), ZDM_JWT_ALGORITHMS="RS256"))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_private_key_is_not_a_public_key(kind: str) -> None:
    """A private key in ZDM_JWT_PUBLIC_KEY cannot verify anything: refuse it at start-up."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    algorithm = "RS256" if kind == "rsa" else "ES256"
    assert "ZDM_JWT_PUBLIC_KEY" in config_error(public(pem, ZDM_JWT_ALGORITHMS=algorithm))


def test_rsa_key_with_es256(rsa_pem: str) -> None:
    assert "ZDM_JWT_PUBLIC_KEY" in config_error(public(rsa_pem, ZDM_JWT_ALGORITHMS="ES256"))


def test_ec_key_with_rs256(ec_pem: str) -> None:
    assert "ZDM_JWT_PUBLIC_KEY" in config_error(public(ec_pem, ZDM_JWT_ALGORITHMS="RS256"))


def test_all_problems_reported_at_once() -> None:
    message = config_error(
        {
            "ZDM_JWT_SECRET": SHORT_SECRET,
            "ZDM_TIMEZONE": "Nowhere/Special",
            "ZDM_JWT_LEEWAY": "later",
            "ZDM_DB_POOL_SIZE": "0",
        }
    )
    for variable in ("DATABASE_URL", "ZDM_JWT_SECRET", "ZDM_TIMEZONE", "ZDM_JWT_LEEWAY"):
        assert variable in message
    assert "ZDM_DB_POOL_SIZE" in message


def test_all_problems_with_no_key_at_all() -> None:
    message = config_error({"ZDM_TIMEZONE": "Nowhere/Special"})
    for variable in ("DATABASE_URL", "ZDM_JWT_SECRET", "ZDM_JWT_PUBLIC_KEY", "ZDM_TIMEZONE"):
        assert variable in message


def test_config_error_never_echoes_the_secret() -> None:
    message = config_error({"DATABASE_URL": DB, "ZDM_JWT_SECRET": "short-but-secret"})
    assert "short-but-secret" not in message


# --- create_app ---------------------------------------------------------------------------------


def test_create_app_without_key_raises() -> None:
    with pytest.raises(ConfigError) as info:
        create_app({"DATABASE_URL": DB})
    assert "ZDM_JWT_SECRET" in str(info.value)


def test_create_app_without_database_url_raises() -> None:
    with pytest.raises(ConfigError) as info:
        create_app({"ZDM_JWT_SECRET": SECRET})
    assert "DATABASE_URL" in str(info.value)


def test_create_app_with_good_settings_does_not_connect() -> None:
    """Settings are checked at start-up; the database is only reached by a request."""
    app = create_app({"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "ZDM_JWT_SECRET": SECRET})
    assert state.of(app).settings.database_url == "postgresql://u@127.0.0.1:1/x"


# --- Polling settings ---------------------------------------------------------------------------


POLLING_SECONDS = ("ZDM_STALL_SECONDS", "ZDM_POLL_ACTIVE_SECONDS", "ZDM_POLL_WAITING_SECONDS")


def test_polling_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.cors_origins == frozenset()
    assert settings.stall_seconds == 300
    assert settings.poll_active_seconds == 5
    assert settings.poll_waiting_seconds == 60


def test_polling_values() -> None:
    settings = load_settings(
        {
            **BASE,
            "ZDM_CORS_ORIGINS": " https://ops.example/ ,http://localhost:8080,http://[::1]:3000,",
            "ZDM_STALL_SECONDS": "1",
            "ZDM_POLL_ACTIVE_SECONDS": "2",
            "ZDM_POLL_WAITING_SECONDS": "3600",
        }
    )
    assert settings.cors_origins == {
        "https://ops.example",
        "http://localhost:8080",
        "http://[::1]:3000",
    }
    assert (settings.stall_seconds, settings.poll_active_seconds) == (1, 2)
    assert settings.poll_waiting_seconds == 3600


@pytest.mark.parametrize("value", ["*", " * "])
def test_any_origin(value: str) -> None:
    assert load_settings({**BASE, "ZDM_CORS_ORIGINS": value}).cors_origins == {"*"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [(variable, value) for variable in POLLING_SECONDS for value in ("0", "-1", "abc", "1.5")]
    + [
        ("ZDM_CORS_ORIGINS", "ops.example"),
        ("ZDM_CORS_ORIGINS", "ftp://x"),
        ("ZDM_CORS_ORIGINS", "https://ops.example/path"),
        ("ZDM_CORS_ORIGINS", "https://ok.example,//x"),
        ("ZDM_CORS_ORIGINS", "https://ops.example:port"),
    ],
)
def test_bad_polling_setting_is_named_with_its_value(variable: str, value: str) -> None:
    assert f"{variable}={value!r}" in config_error({**BASE, variable: value})


def test_every_bad_polling_setting_reported_at_once() -> None:
    message = config_error(
        {**BASE, "ZDM_CORS_ORIGINS": "ops.example", **dict.fromkeys(POLLING_SECONDS, "0")}
    )
    for variable in ("ZDM_CORS_ORIGINS", *POLLING_SECONDS):
        assert variable in message


# --- Read replicas ------------------------------------------------------------------------------


def test_no_replicas_by_default() -> None:
    settings = load_settings(BASE)
    assert settings.database_replica_urls == ()
    assert settings.replica_max_lag_s == 5.0


def test_replica_urls_split_on_spaces_and_commas_but_not_inside_a_url() -> None:
    settings = load_settings(
        {
            **BASE,
            "DATABASE_REPLICA_URLS": "postgresql://a/zdm, postgresql://b1,b2/zdm\n postgres://c/z",
            "ZDM_REPLICA_MAX_LAG_S": "0.5",
        }
    )
    assert settings.database_replica_urls == (
        "postgresql://a/zdm",
        "postgresql://b1,b2/zdm",
        "postgres://c/z",
    )
    assert settings.replica_max_lag_s == 0.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_REPLICA_URLS", "host=replica password=hunter2"),
        ("DATABASE_REPLICA_URLS", "postgresql://a/zdm mysql://hunter2@b/zdm"),
        ("ZDM_REPLICA_MAX_LAG_S", "0"),
        ("ZDM_REPLICA_MAX_LAG_S", "-1"),
        ("ZDM_REPLICA_MAX_LAG_S", "soon"),
        ("ZDM_REPLICA_MAX_LAG_S", "nan"),
        ("ZDM_REPLICA_MAX_LAG_S", "inf"),
    ],
)
def test_bad_replica_settings_are_named(variable: str, value: str) -> None:
    message = config_error({**BASE, variable: value})
    assert variable in message
    assert "hunter2" not in message  # URLs may carry passwords: never echoed


# --- The snapshot cache -------------------------------------------------------------------------


def test_cache_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.cache_max_age_ms == 1000
    assert settings.cache_max_bytes == 64 * 2**20
    assert settings.cache_size == 4096


@pytest.mark.parametrize(
    ("max_age_ms", "active", "waiting"), [("1000", 1, 60), ("2500", 3, 60), ("90000", 90, 90)]
)
def test_the_poll_interval_is_never_shorter_than_the_cache_s_max_age(
    max_age_ms: str, active: int, waiting: int
) -> None:
    settings = load_settings(
        {**BASE, "ZDM_CACHE_MAX_AGE_MS": max_age_ms, "ZDM_POLL_ACTIVE_SECONDS": "1"}
    )
    assert (settings.poll_active_seconds, settings.poll_waiting_seconds) == (active, waiting)


@pytest.mark.parametrize("variable", ["ZDM_CACHE_MAX_AGE_MS", "ZDM_CACHE_MAX_BYTES"])
@pytest.mark.parametrize("value", ["-1", "1.5", "lots"])
def test_bad_cache_settings_are_named_with_their_value(variable: str, value: str) -> None:
    message = config_error({**BASE, variable: value})
    assert f"{variable}={value!r}" in message


def test_a_listen_url_of_an_earlier_release_is_ignored_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="zdm_monitor"):
        create_app({**BASE, "DATABASE_LISTEN_URL": "postgresql://primary/zdm"})
        create_app(BASE)
    warnings = [r.getMessage() for r in caplog.records if "DATABASE_LISTEN_URL" in r.getMessage()]
    assert len(warnings) == 1
    assert "ignored" in warnings[0] and "ZDM_CACHE_MAX_AGE_MS" in warnings[0]


def test_a_worker_class_is_ignored_with_one_warning() -> None:
    with records() as said:
        create_app({**BASE, "GUNICORN_WORKER_CLASS": "sync"})
    (warning,) = [r.getMessage() for r in said if "GUNICORN_WORKER_CLASS" in r.getMessage()]
    assert "ignored" in warning and "gthread" in warning
