"""WSGI entry point for gunicorn: ``gunicorn wsgi:app``."""

from zdm_monitor import create_app

app = create_app()
