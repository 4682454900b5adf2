"""`gunicorn -c config/gunicorn.conf.py wsgi:app` in a checkout: the packaged settings,
zdm_monitor/runtime/gunicorn_conf.py, which production names
`-c python:zdm_monitor.runtime.gunicorn_conf`."""

from zdm_monitor.runtime.gunicorn_conf import *  # noqa: F403
