"""Bearer token check: pyjwt with pinned algorithms, exp required, before any database work."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import jwt
from flask import g, request

from .. import state
from ..config import Settings
from .errors import Unauthorized
from .messages import Message, say

REALM = 'Bearer realm="zdm-monitor"'
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
# 9999-12-31 23:59:59 UTC: later than any real token, early enough for every comparison.
MAX_NUMERIC_DATE = 253_402_300_799

# pyjwt exception -> (message for the body, RFC 6750 error_description, which must be ASCII)
REASONS: list[tuple[type[Exception], Message, str]] = [
    (jwt.InvalidAudienceError, say("token_audience"), "wrong audience"),
    (jwt.InvalidIssuerError, say("token_issuer"), "wrong issuer"),
    (jwt.MissingRequiredClaimError, say("token_claim_missing"), "missing claim"),
    (jwt.InvalidSignatureError, say("token_signature"), "bad signature"),
    (jwt.InvalidAlgorithmError, say("token_algorithm"), "algorithm not allowed"),
]


class TokenRejected(Unauthorized):
    """A token that does not verify, and why in RFC 6750's ASCII words (zdm-monitor check)."""

    def __init__(self, message: Message, description: str, error: str = "invalid_token") -> None:
        challenge = f'{REALM}, error="{error}", error_description="{description}"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})
        self.description = description


def require_token() -> None:
    """Authenticate the request or raise 401; preflight requests carry no token."""
    if request.method == "OPTIONS":
        return
    g.token_claims = verify(request.headers.get("Authorization"), state.settings())


def verify(header: str | None, settings: Settings) -> dict[str, Any]:
    """Return the claims of a valid bearer token, or raise Unauthorized."""
    if not header or not header.strip():
        raise Unauthorized(say("token_required"), headers={"WWW-Authenticate": REALM})
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        # RFC 6750 3.1: a request using another scheme gets the bare challenge, no error code.
        raise Unauthorized(say("bearer_form"), headers={"WWW-Authenticate": REALM})
    token = token.strip()
    if not token:
        raise TokenRejected(say("token_empty"), "empty token", "invalid_request")
    claims = _verified_claims(token, settings)
    # The time claims change meaning with the clock: checked on every request, with the leeway.
    now, leeway = time.time(), settings.jwt_leeway
    if now > claims["exp"] + leeway:
        raise TokenRejected(say("token_expired"), "token expired")
    if any(claim in claims and claims[claim] > now + leeway for claim in ("nbf", "iat")):
        raise TokenRejected(say("token_not_yet"), "token not yet valid")
    return claims


@lru_cache(maxsize=4096)
def _verified_claims(token: str, settings: Settings) -> dict[str, Any]:
    """Check signature, algorithm, audience, issuer and claim types once per token, as
    dashboards send the same one on every poll (only tokens that pass are kept)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_key,
            algorithms=list(settings.jwt_algorithms),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require": ["exp"],
                "verify_aud": settings.jwt_audience is not None,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError) as exc:
        for kind, message, description in REASONS:
            if isinstance(exc, kind):
                raise TokenRejected(message, description) from None
        raise TokenRejected(say("token_malformed"), "malformed token") from None
    for claim in NUMERIC_DATE_CLAIMS:
        if claim in claims and not is_numeric_date(claims[claim]):
            raise TokenRejected(
                say("token_numeric_date", claim=claim), f"{claim} is not a NumericDate"
            )
    return claims


def is_numeric_date(value: Any) -> bool:
    """RFC 7519 NumericDate: a JSON number (pyjwt alone would take "1700000000"), here within
    year 9999 either side of 1970, so that no comparison or float conversion can overflow."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE
