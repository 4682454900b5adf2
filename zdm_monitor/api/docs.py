"""The interactive API docs at /api/docs: Swagger UI from the installed bundle, no CDN."""

from __future__ import annotations

import swagger_ui_bundle
from flask import Blueprint, Response, abort, send_from_directory, url_for

from .live import security_headers

ASSETS = "/api/docs/assets/"
# What the page loads of the bundle. Its demo pages (index.html, oauth2-redirect.html, a
# Petstore initializer) are not this service's and are not served.
BUNDLE_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ZDM Monitor API</title>
<link rel="stylesheet" href="{assets}swagger-ui.css">
<script src="{assets}swagger-ui-bundle.js" defer></script>
<script src="/live/docs.js" defer></script>
</head>
<body><div id="swagger-ui" data-spec="{spec}"></div></body>
</html>
"""

bp = Blueprint("docs", __name__)
# No inline code: the page's own script is a file (/live/docs.js), so the policy needs no
# 'unsafe-inline'. Swagger UI draws its icons from data: URIs in its stylesheet.
bp.after_request(security_headers(images="img-src 'self' data:; "))


@bp.get("/api/docs")
def page() -> Response:
    """Swagger UI on this service's OpenAPI document."""
    spec = url_for("api-docs.openapi_json")
    return Response(PAGE.format(assets=ASSETS, spec=spec), mimetype="text/html")


@bp.get(f"{ASSETS}<path:filename>")
def asset(filename: str) -> Response:
    """One of the bundle's files the page loads; anything else is a 404."""
    if filename not in BUNDLE_FILES:
        abort(404)
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
