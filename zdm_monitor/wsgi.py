"""The production entry point: gunicorn -c python:zdm_monitor.gunicorn_conf zdm_monitor.wsgi:app"""

from . import create_app
from .config import ConfigError, refuse

try:
    app = create_app()
except ConfigError as exc:
    refuse(exc.problems)
    raise
