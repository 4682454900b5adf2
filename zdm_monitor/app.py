"""The Flask app: settings, state, blueprints, error handlers, request hooks."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from importlib.metadata import version
from typing import Any

from flask import Flask
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics, state
from .api import docs, live, monitoring, openapi, probes
from .api.bodies import ErrorResponseSchema
from .api.context import begin_request, echo_request_id
from .api.cors import register_cors
from .api.errors import register_error_handlers
from .config import OBSOLETE, load_settings
from .runtime.logs import configure_logging, log_request


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment (or the given mapping), failing fast on bad settings."""
    env = os.environ if env is None else env
    # No app-wide /static route: the live page's blueprint serves zdm_monitor/api/static itself.
    app = SyncFlask("zdm_monitor", static_folder=None)
    settings = load_settings(env)
    state.install(app, settings)
    configure_flask(app)
    configure_logging()
    warn_obsolete(env)
    register_blueprints(app)
    # After the blueprints: this replaces the HTTPException handler flask-smorest's Api added.
    register_error_handlers(app)
    register_request_hooks(app)
    trust_proxies(app, settings.proxy_count)
    return app


class SyncFlask(Flask):
    """Flask that never asks inspect, on every request, whether a view or hook is async: none is."""

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return func


class MonitorApi(Api):  # type: ignore[misc]
    ERROR_SCHEMA = ErrorResponseSchema
    # Each operation documents the errors it really answers with (openapi.py), no catch-all.
    DEFAULT_ERROR_RESPONSE_NAME = None


def configure_flask(app: Flask) -> None:
    # A path with // is not one of this API's: a plain 404, not a redirect whose Location is
    # built from the client's Host header.
    app.url_map.merge_slashes = False
    # Keep the contract's key order and send Korean as UTF-8 rather than \u escapes.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]


def warn_obsolete(env: Mapping[str, str]) -> None:
    for name, why in OBSOLETE.items():
        if env.get(name):
            logging.getLogger(__name__).warning("%s is ignored: %s.", name, why)


def register_blueprints(app: Flask) -> None:
    app.config.update(
        API_TITLE="ZDM Monitor",
        API_VERSION=version("zdm-monitor"),
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"info": {"description": openapi.DESCRIPTION}},
    )
    api = MonitorApi(app)
    # One parameter per query field, as apispec writes them, with what it leaves out.
    api.ma_plugin.converter.add_parameter_attribute_function(openapi.query_parameter)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.register_blueprint(monitoring.blp)
    for blueprint in (probes.bp, metrics.bp, live.bp, docs.bp):
        app.register_blueprint(blueprint)


def register_request_hooks(app: Flask) -> None:
    app.before_request(begin_request)
    register_cors(app)
    app.after_request(log_request)
    app.after_request(metrics.observe)
    app.after_request(echo_request_id)
    app.teardown_appcontext(state.release_connection)


def trust_proxies(app: Flask, hops: int) -> None:
    """Trust exactly as many X-Forwarded-* hops as there are proxies in front (nginx: 1)."""
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
