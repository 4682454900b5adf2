"""The checkout's entry point, `gunicorn wsgi:app`: zdm_monitor/runtime/wsgi.py's."""

from zdm_monitor.runtime.wsgi import app

__all__ = ["app"]
