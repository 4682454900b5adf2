"""The app as the development stack serves it: the live page offers the development token.

`zdm-dev serve` signs that token with the data folder's development secret and passes it
in ZDM_DEV_TOKEN; the production entry point (wsgi.py) never reads that variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask

from zdm_monitor import create_app as create_service_app
from zdm_monitor.api.live import offer_token

DEV_TOKEN_VARIABLE = "ZDM_DEV_TOKEN"


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """The service's app, with the live page offering the stack's token when there is one."""
    env = os.environ if env is None else env
    app = create_service_app(env)
    token = env.get(DEV_TOKEN_VARIABLE)
    if token:
        offer_token(app, token)
    return app
