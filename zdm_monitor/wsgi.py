"""The production entry point: gunicorn -c python:zdm_monitor.gunicorn_conf zdm_monitor.wsgi:app"""

from . import create_app

app = create_app()
