"""The checkout's entry point, `gunicorn wsgi:app`: the package's own (zdm_monitor/wsgi.py)."""

from zdm_monitor.wsgi import app

__all__ = ["app"]
