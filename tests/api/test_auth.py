"""Bearer token authentication through the real app: every way in, and every way to be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.api import JOB_URL, SECRET, bearer, make_token
from werkzeug.test import TestResponse

MakeApp = Callable[..., Flask]

URL = f"{JOB_URL}1"
CLOSED_PORT_URL = "postgresql://u@127.0.0.1:1/x"
ENVELOPE_KEYS = {"requestID", "success", "error", "timestamp", "code"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def valid_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "tester", "iat": now, "exp": now + 3600, **extra}


def unsigned_token(alg: str) -> str:
    """A token that claims to need no signature ('alg: none' and its spellings)."""
    header = b64url_json({"alg": alg, "typ": "JWT"})
    return f"{header}.{b64url_json(valid_claims())}."


def hmac_token(key: bytes, claims: dict[str, Any], alg: str = "HS256", **header: Any) -> str:
    """An HMAC token signed by hand: any key bytes (even a public key's PEM), any claims."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64url_json({'alg': alg, 'typ': 'JWT', **header})}.{b64url_json(claims)}"
    signature = hmac.new(key, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def rsa_keys() -> tuple[str, str]:
    """A fresh RSA key pair as (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pems(key)


def ec_keys() -> tuple[str, str]:
    """A fresh P-256 key pair as (private PEM, public PEM)."""
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def _pems(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


# RFC 6750 3.1: a request without usable credentials (no header, another scheme) should get a
# bare challenge; a malformed Authorization header may say invalid_request.
NO_CREDENTIALS = (None, "invalid_request")
Expected = str | None | tuple[str | None, ...]


def challenge_error(challenge: str) -> str | None:
    match = re.search(r'error="([^"]*)"', challenge)
    return match.group(1) if match else None


def assert_rejected(response: TestResponse, error: Expected = "invalid_token") -> None:
    """The 401 envelope with an RFC 6750 challenge whose error code is one of those expected."""
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["code"] == "AUTH-ERROR-01"
    assert isinstance(body["error"], str) and body["error"]
    assert body["requestID"] == response.headers["X-Request-ID"]
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), challenge
    allowed = error if isinstance(error, tuple) else (error,)
    assert challenge_error(challenge) in allowed, challenge


def assert_accepted(response: TestResponse) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is True
    assert body["data"]["job"]["info"]["name"] == "daily-backup"


# --- Rejections with the default HS256 configuration -------------------------------------------


@dataclass(frozen=True)
class Case:
    headers: dict[str, str]
    error: Expected


def now() -> int:
    return int(time.time())


REJECTIONS: dict[str, Callable[[], Case]] = {
    "missing header": lambda: Case({}, None),
    "blank header": lambda: Case({"Authorization": "   "}, None),
    "basic scheme": lambda: Case({"Authorization": "Basic dGVzdGVyOnNlY3JldA=="}, NO_CREDENTIALS),
    "token without scheme": lambda: Case({"Authorization": make_token()}, NO_CREDENTIALS),
    "empty token": lambda: Case({"Authorization": "Bearer "}, NO_CREDENTIALS),
    "garbage": lambda: Case(bearer("not-a-jwt"), "invalid_token"),
    "three garbage parts": lambda: Case(bearer("abc.def.ghi"), "invalid_token"),
    "bad signature": lambda: Case(
        bearer(make_token(key="another-secret-that-is-long-enough-too")), "invalid_token"
    ),
    "tampered payload": lambda: Case(bearer(_tampered()), "invalid_token"),
    "alg none": lambda: Case(bearer(unsigned_token("none")), "invalid_token"),
    "alg None": lambda: Case(bearer(unsigned_token("None")), "invalid_token"),
    "alg NONE": lambda: Case(bearer(unsigned_token("NONE")), "invalid_token"),
    "alg nOnE": lambda: Case(bearer(unsigned_token("nOnE")), "invalid_token"),
    "HS384 not allowed": lambda: Case(
        bearer(hmac_token(SECRET.encode(), valid_claims(), "HS384")), "invalid_token"
    ),
    "expired": lambda: Case(bearer(make_token(exp=now() - 3600)), "invalid_token"),
    "expired past leeway": lambda: Case(bearer(make_token(exp=now() - 60)), "invalid_token"),
    "nbf in the future": lambda: Case(bearer(make_token(nbf=now() + 3600)), "invalid_token"),
    "iat in the future": lambda: Case(bearer(make_token(iat=now() + 3600)), "invalid_token"),
    "exp missing": lambda: Case(bearer(make_token(exp=None)), "invalid_token"),
    "exp numeric string": lambda: Case(
        bearer(hmac_token(SECRET.encode(), valid_claims(exp="9999999999"))), "invalid_token"
    ),
    "exp boolean": lambda: Case(
        bearer(hmac_token(SECRET.encode(), valid_claims(exp=True))), "invalid_token"
    ),
    "nbf numeric string": lambda: Case(
        bearer(hmac_token(SECRET.encode(), valid_claims(nbf=str(now() - 60)))), "invalid_token"
    ),
    "iat numeric string": lambda: Case(
        bearer(hmac_token(SECRET.encode(), valid_claims(iat=str(now() - 60)))), "invalid_token"
    ),
}


def _tampered() -> str:
    header, _, signature = make_token().split(".")
    payload = b64url_json(valid_claims(sub="admin"))
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_rejected(client: FlaskClient, name: str) -> None:
    case = REJECTIONS[name]()
    assert_rejected(client.get(URL, headers=case.headers), case.error)


@pytest.mark.parametrize("name", ["basic scheme", "empty token", "garbage", "alg none", "expired"])
def test_rejected_before_any_job_lookup(client: FlaskClient, name: str) -> None:
    """An unauthenticated caller learns nothing: a missing job looks the same as a real one."""
    case = REJECTIONS[name]()
    real = client.get(URL, headers=case.headers)
    missing = client.get(f"{JOB_URL}999999", headers=case.headers)
    by_name = client.get(f"{JOB_URL}no-such-job?mode=bogus", headers=case.headers)
    for response in (real, missing, by_name):
        assert_rejected(response, case.error)
    assert real.get_json()["error"] == missing.get_json()["error"] == by_name.get_json()["error"]


def test_token_in_query_string_not_accepted(client: FlaskClient) -> None:
    response = client.get(f"{URL}?access_token={make_token()}")
    assert_rejected(response, None)


def test_token_in_query_string_does_not_override_header(client: FlaskClient) -> None:
    response = client.get(f"{URL}?access_token={make_token()}", headers=bearer("garbage"))
    assert_rejected(response, "invalid_token")


# --- Acceptances --------------------------------------------------------------------------------


ACCEPTED: dict[str, Callable[[], dict[str, str]]] = {
    "Bearer": lambda: {"Authorization": f"Bearer {make_token()}"},
    "lower-case bearer": lambda: {"Authorization": f"bearer {make_token()}"},
    "upper-case BEARER": lambda: {"Authorization": f"BEARER {make_token()}"},
    "expired within leeway": lambda: bearer(make_token(exp=now() - 10)),
    "nbf within leeway": lambda: bearer(make_token(nbf=now() + 10)),
    "nbf in the past": lambda: bearer(make_token(nbf=now() - 60)),
    "float exp": lambda: bearer(hmac_token(SECRET.encode(), valid_claims(exp=now() + 3600.5))),
    "aud present but not configured": lambda: bearer(make_token(aud="someone-else")),
    "iss present but not configured": lambda: bearer(make_token(iss="someone-else")),
    "no iat": lambda: bearer(make_token(iat=None)),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted(client: FlaskClient, name: str) -> None:
    assert_accepted(client.get(URL, headers=ACCEPTED[name]()))


def test_leeway_is_configurable(make_app: MakeApp) -> None:
    client = make_app(ZDM_JWT_LEEWAY="0").test_client()
    assert_rejected(client.get(URL, headers=bearer(make_token(exp=now() - 5))))
    generous = make_app(ZDM_JWT_LEEWAY="600").test_client()
    assert_accepted(generous.get(URL, headers=bearer(make_token(exp=now() - 300))))


# --- Audience and issuer when configured --------------------------------------------------------


@pytest.fixture
def strict_client(make_app: MakeApp) -> FlaskClient:
    return make_app(ZDM_JWT_AUDIENCE="zdm-monitor", ZDM_JWT_ISSUER="zdm-api").test_client()


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "someone-else", "iss": "zdm-api"},
        {"aud": None, "iss": "zdm-api"},
        {"aud": "zdm-monitor", "iss": "someone-else"},
        {"aud": "zdm-monitor", "iss": None},
    ],
    ids=["wrong aud", "missing aud", "wrong iss", "missing iss"],
)
def test_audience_and_issuer_enforced_when_configured(
    strict_client: FlaskClient, claims: dict[str, Any]
) -> None:
    assert_rejected(strict_client.get(URL, headers=bearer(make_token(**claims))))


@pytest.mark.parametrize("aud", ["zdm-monitor", ["other", "zdm-monitor"]])
def test_audience_and_issuer_accepted_when_right(
    strict_client: FlaskClient, aud: str | list[str]
) -> None:
    token = make_token(aud=aud, iss="zdm-api")
    assert_accepted(strict_client.get(URL, headers=bearer(token)))


# --- Public keys: RS256 and ES256 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return rsa_keys()


@pytest.fixture(scope="module")
def ec_pair() -> tuple[str, str]:
    return ec_keys()


def public_key_app(
    make_app: MakeApp, public_key: str, algorithms: str, **env: str | None
) -> FlaskClient:
    app = make_app(
        ZDM_JWT_SECRET=None, ZDM_JWT_PUBLIC_KEY=public_key, ZDM_JWT_ALGORITHMS=algorithms, **env
    )
    return app.test_client()


@pytest.mark.parametrize("as_file", [False, True], ids=["pem text", "pem file"])
def test_rs256_happy_path(
    make_app: MakeApp, rsa_pair: tuple[str, str], tmp_path: Path, as_file: bool
) -> None:
    private, public = rsa_pair
    key = public
    if as_file:
        path = tmp_path / "rsa.pub.pem"
        path.write_text(public)
        key = str(path)
    client = public_key_app(make_app, key, "RS256")
    assert_accepted(client.get(URL, headers=bearer(make_token(key=private, algorithm="RS256"))))


@pytest.mark.parametrize("as_file", [False, True], ids=["pem text", "pem file"])
def test_es256_happy_path(
    make_app: MakeApp, ec_pair: tuple[str, str], tmp_path: Path, as_file: bool
) -> None:
    private, public = ec_pair
    key = public
    if as_file:
        path = tmp_path / "ec.pub.pem"
        path.write_text(public)
        key = str(path)
    client = public_key_app(make_app, key, "ES256")
    assert_accepted(client.get(URL, headers=bearer(make_token(key=private, algorithm="ES256"))))


def test_hs256_signed_with_public_key_pem_rejected(
    make_app: MakeApp, rsa_pair: tuple[str, str]
) -> None:
    """The algorithm-confusion attack: the public key's PEM text used as an HMAC secret."""
    _, public = rsa_pair
    client = public_key_app(make_app, public, "RS256")
    token = hmac_token(public.encode(), valid_claims())
    assert_rejected(client.get(URL, headers=bearer(token)))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_rejected_with_public_key(
    make_app: MakeApp, rsa_pair: tuple[str, str], alg: str
) -> None:
    client = public_key_app(make_app, rsa_pair[1], "RS256")
    assert_rejected(client.get(URL, headers=bearer(unsigned_token(alg))))


def test_rs256_token_from_another_key_rejected(
    make_app: MakeApp, rsa_pair: tuple[str, str]
) -> None:
    other_private, _ = rsa_keys()
    client = public_key_app(make_app, rsa_pair[1], "RS256")
    token = make_token(key=other_private, algorithm="RS256")
    assert_rejected(client.get(URL, headers=bearer(token)))


def test_es256_app_rejects_rs256_token(
    make_app: MakeApp, rsa_pair: tuple[str, str], ec_pair: tuple[str, str]
) -> None:
    client = public_key_app(make_app, ec_pair[1], "ES256")
    token = make_token(key=rsa_pair[0], algorithm="RS256")
    assert_rejected(client.get(URL, headers=bearer(token)))


def test_rs256_expired_rejected(make_app: MakeApp, rsa_pair: tuple[str, str]) -> None:
    client = public_key_app(make_app, rsa_pair[1], "RS256")
    token = make_token(key=rsa_pair[0], algorithm="RS256", exp=now() - 3600)
    assert_rejected(client.get(URL, headers=bearer(token)))


def test_hs256_app_rejects_rs256_token(client: FlaskClient, rsa_pair: tuple[str, str]) -> None:
    token = make_token(key=rsa_pair[0], algorithm="RS256")
    assert_rejected(client.get(URL, headers=bearer(token)))


# --- Authentication comes before the database ---------------------------------------------------


@pytest.fixture
def no_db_client(make_app: MakeApp) -> FlaskClient:
    return make_app(DATABASE_URL=CLOSED_PORT_URL, ZDM_DB_CONNECT_TIMEOUT="1").test_client()


@pytest.mark.parametrize(
    "name", ["missing header", "basic scheme", "garbage", "bad signature", "alg none", "expired"]
)
def test_authentication_before_database(no_db_client: FlaskClient, name: str) -> None:
    case = REJECTIONS[name]()
    for url in (URL, f"{JOB_URL}daily-backup", f"{JOB_URL}1?status=bogus"):
        assert_rejected(no_db_client.get(url, headers=case.headers), case.error)


# --- Public routes ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/openapi.json", "/api/docs"])
def test_public_routes_need_no_token(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/api/openapi.json", "/api/docs"])
def test_public_routes_ignore_a_bad_token(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers=bearer("garbage"))
    assert response.status_code == 200


def test_a_verified_token_still_expires(make_app: Callable[..., Flask]) -> None:
    """The signature check is cached per token; the clock is read on every request."""
    client = make_app(ZDM_JWT_LEEWAY="0").test_client()
    token = make_token(exp=int(time.time()) + 1)
    assert client.get(JOB_URL + "1", headers=bearer(token)).status_code == 200
    time.sleep(2.1)
    response = client.get(JOB_URL + "1", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"] == "토큰이 만료되었습니다."
    assert 'error_description="token expired"' in response.headers["WWW-Authenticate"]


def test_a_token_verified_for_one_key_is_not_trusted_under_another(
    make_app: Callable[..., Flask],
) -> None:
    token = make_token()
    assert make_app().test_client().get(JOB_URL + "1", headers=bearer(token)).status_code == 200
    other = make_app(ZDM_JWT_SECRET="another-secret-that-is-long-enough-for-hs256")
    assert other.test_client().get(JOB_URL + "1", headers=bearer(token)).status_code == 401


# --- Any content of a correctly signed token: accepted or 401, never a 500 ----------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**420), max_value=10**420)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
CLAIM_NAMES = st.sampled_from(["exp", "nbf", "iat", "aud", "iss", "sub", "jti", "scope", "x"])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(claims=st.dictionaries(CLAIM_NAMES, JSON_VALUES, max_size=6), header=JSON_VALUES)
@example(claims={"exp": 10**400}, header=None)
@example(claims={"exp": time.time() + 60, "nbf": 10**309}, header=None)
@example(claims={"exp": float("inf")}, header=None)
@example(claims={"exp": float("nan"), "iat": -(10**400)}, header={"kid": 10**400})
def test_any_claims_signed_correctly_are_accepted_or_refused_with_401(
    client: FlaskClient, claims: dict[str, Any], header: Any
) -> None:
    extra = {"kid": header} if header is not None else {}
    token = hmac_token(SECRET.encode(), claims, **extra)
    response = client.get(URL, headers=bearer(token))
    assert response.status_code in (200, 401), (claims, response.get_data(as_text=True))
    if response.status_code == 401:
        assert_rejected(response, ("invalid_token", "invalid_request"))
    else:
        assert response.get_json()["data"]["job"]["info"]["name"] == "daily-backup"
