"""What zdm-monitor check says: a result per check, the summary, and a failure's words, which
never hold the secret, a password or the token."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
import psycopg2
from psycopg2.extensions import parse_dsn

from ..config import HMAC_ALGORITHMS, Settings
from ..data.deadlines import DeadlineExceeded

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TAGS = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    message: str

    def line(self) -> str:
        return f"{TAGS[self.status]} {self.name}: {self.message}"


def passed(results: list[Result]) -> bool:
    return all(r.status in (OK, WARN) for r in results)


def summary(results: list[Result]) -> str:
    """The last line, as nginx -t ends with whether the test was successful."""
    counts = {status: sum(r.status == status for r in results) for status in TAGS}
    if passed(results):
        warned = f" ({counts[WARN]} with a warning)" if counts[WARN] else ""
        return f"zdm-monitor check: all {len(results)} passed{warned}."
    skipped = f", {counts[SKIP]} not run" if counts[SKIP] else ""
    return f"zdm-monitor check: {counts[FAIL]} of {len(results)} failed{skipped}."


def describe(url: str) -> str:
    """Where a URL points, without its password: user@host:port/dbname."""
    try:
        parts = parse_dsn(url)
    except psycopg2.ProgrammingError:
        return "(unreadable)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    where = f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}"
    return f"{user}{where}/{parts.get('dbname') or '?'}"


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def unreachable(where: str, error: BaseException, within: str, setting: str, then: str) -> str:
    """Why a server did not answer and what to do, never its URL (libpq may quote it whole)."""
    if isinstance(error, psycopg2.ProgrammingError):
        return f"{setting} holds a URL libpq does not accept: postgresql://user@host:port/dbname"
    if isinstance(error, DeadlineExceeded):
        return f"{where} did not answer within {within}: {then}"
    return f"{where}: {first_line(error)}: {then}"


def why_rejected(description: str, token: str, settings: Settings) -> str:
    """What to do about a token the service refuses, from its unverified header and claims."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        claims, algorithm = {}, None
    key = (
        "ZDM_JWT_SECRET" if settings.jwt_algorithms[0] in HMAC_ALGORITHMS else "ZDM_JWT_PUBLIC_KEY"
    )
    expired = claims.get("exp")
    ago = f", {time.time() - expired:.0f} s ago" if isinstance(expired, int | float) else ""
    allowed = ", ".join(settings.jwt_algorithms)
    hints = {
        "token expired": f"its exp is {expired}{ago} (leeway {settings.jwt_leeway} s):"
        " have a new one issued",
        "token not yet valid": "its nbf or iat is ahead of this host's clock: check both clocks",
        "wrong audience": f"its aud is {claims.get('aud')!r},"
        f" ZDM_JWT_AUDIENCE {settings.jwt_audience!r}",
        "wrong issuer": f"its iss is {claims.get('iss')!r}, ZDM_JWT_ISSUER {settings.jwt_issuer!r}",
        "missing claim": "it lacks exp, or aud or iss while ZDM_JWT_AUDIENCE or ZDM_JWT_ISSUER"
        " is set",
        "bad signature": f"it was signed with another key than {key}: set the key the ZDM API"
        " signs with",
        "algorithm not allowed": f"it is signed with {algorithm}; ZDM_JWT_ALGORITHMS allows"
        f" {allowed}",
        "malformed token": "it is not a JWT (header.payload.signature, base64url)",
    }
    return hints.get(description, "see the ZDM_JWT_* settings in docs/configuration.md")
