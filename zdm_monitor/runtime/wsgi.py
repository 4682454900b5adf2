"""The production entry point:
gunicorn -c python:zdm_monitor.runtime.gunicorn_conf zdm_monitor.runtime.wsgi:app
"""

from .. import create_app
from ..environment import ConfigError, refuse

try:
    app = create_app()
except ConfigError as exc:
    refuse(exc.problems)
    raise
