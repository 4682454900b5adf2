"""The nginx site, package data (ops/nginx-site.conf), filled in for one deployment."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template

from ..api.errors import HTTP_MESSAGES
from ..api.messages import LANGUAGES

# The line of the site that names the gunicorn node, repeated once per node.
UPSTREAM_LINE = re.compile(r"^.*\$\{ZDM_UPSTREAM\}.*$", re.MULTILINE)


def render_site(listen: str, upstreams: list[str], log_dir: Path, server_name: str) -> str:
    """Fill the placeholders of the site, one upstream line per gunicorn node."""
    text = files("zdm_monitor.ops").joinpath("nginx-site.conf").read_text(encoding="utf-8")
    text = UPSTREAM_LINE.sub(
        lambda line: "\n".join(line[0].replace("${ZDM_UPSTREAM}", u) for u in upstreams), text
    )
    messages = "\n".join(
        f'    "{language}:{status}" "{message.text(language)}";'
        for status, message in HTTP_MESSAGES.items()
        for language in LANGUAGES
    )
    return Template(text).safe_substitute(
        ZDM_ERROR_MESSAGES=messages,
        ZDM_LISTEN=listen,
        ZDM_LOG_DIR=str(log_dir),
        ZDM_SERVER_NAME=server_name,
    )
