"""zdm-monitor: the monitoring API of ZDM backup jobs.

Importing the package loads nothing more: gunicorn's settings must set PROMETHEUS_MULTIPROC_DIR
before the app's metrics import prometheus_client, which reads it once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment (or the given mapping), failing fast on bad settings."""
    from .environment import ConfigError, metrics_folder

    # prometheus_client writes into that folder once imported: an empty or relative one is refused.
    problems: list[str] = []
    metrics_folder(os.environ, problems)
    if problems:
        raise ConfigError(problems)
    from .app import create_app as build

    return build(env)
