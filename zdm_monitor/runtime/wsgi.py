"""The production entry point, `zdm_monitor.runtime.wsgi:app` (see gunicorn_conf.py)."""

from .. import create_app
from ..environment import ConfigError, refuse

try:
    app = create_app()
except ConfigError as exc:
    refuse(exc.problems)
    raise
