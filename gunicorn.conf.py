"""gunicorn reads ./gunicorn.conf.py when started without -c: a bare `gunicorn wsgi:app` here
runs with the packaged settings too (loopback bind, the hardened worker, the JSON logs)."""

from zdm_monitor.runtime.gunicorn_conf import *  # noqa: F403
