"""gunicorn reads ./gunicorn.conf.py when started without -c: a bare `gunicorn wsgi:app` here
runs with config/gunicorn.conf.py too (loopback bind, the hardened worker, the JSON logs)."""

import runpy
from pathlib import Path

globals().update(
    runpy.run_path(str(Path(__file__).resolve().parent / "config" / "gunicorn.conf.py"))
)
