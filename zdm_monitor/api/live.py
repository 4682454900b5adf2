"""The live page at /: the reference polling client, plain files served without a token."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from flask import Blueprint, Flask, Response, request, send_from_directory
from markupsafe import escape

from .. import state

STATIC = Path(__file__).with_name("static")
# index.html carries this empty slot; only the development stack fills it, with its token, and
# only for a page this machine's browser asked for by a loopback name.
TOKEN_SLOT = '<meta name="zdm-dev-token" content="">'
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
LOOPBACK_CLIENTS = frozenset({IPv4Address("127.0.0.1"), IPv6Address("::1")})
HOST = re.compile(r"(\[[^]]*\]|[^:\[\]]*)(?::[0-9]*)?")  # the name, then the port if any


def security_headers(images: str = "") -> Callable[[Response], Response]:
    """A blueprint's after_request: its pages and files load only this service's files (and
    images from `images`), run no inline code, and are never framed or sniffed."""
    headers = {
        "Content-Security-Policy": f"default-src 'self'; {images}base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'; object-src 'none'",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }

    def secure(response: Response) -> Response:
        response.headers.update(headers)
        return response

    return secure


bp = Blueprint("live", __name__, static_folder="static", static_url_path="/live")
# The page loads only its own three files and talks only to this service.
bp.after_request(security_headers())


@cache
def page_template() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


def offer_token(app: Flask, token: str) -> None:
    """Have the page offer this token (the development stack's own, never a production one)."""
    state.of(app).offered_token = token


@bp.get("/")
def page() -> Response:
    """Serve the live page, offering the development token when the stack gave one."""
    html = page_template()
    token = state.of().offered_token
    if token and loopback_request():
        html = html.replace(TOKEN_SLOT, f'<meta name="zdm-dev-token" content="{escape(token)}">')
    response = Response(html, mimetype="text/html")
    # Never kept by a cache: the page may carry the development token.
    response.headers["Cache-Control"] = "no-store"
    return response


def loopback_request() -> bool:
    """Whether the browser asked for this machine by a loopback name, from this machine.

    A page whose DNS name an attacker rebinds to 127.0.0.1 reaches the service with its own
    name as Host; a client elsewhere has its own address. Behind nginx both come from its
    X-Forwarded-* headers (ProxyFix), as the service trusts them for everything else.
    """
    host = HOST.fullmatch(request.headers.get("Host", "").lower())
    try:
        client = ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    return host is not None and host[1] in LOOPBACK_NAMES and client in LOOPBACK_CLIENTS


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The icon browsers ask for on their own (Swagger UI's page names none)."""
    response = send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
