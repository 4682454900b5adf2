"""The one rule for reading a variable of ours, shared by the app, gunicorn's settings and the
commands: set but empty or blank (an environment file's `NAME=`) is refused, not a default."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

# Every variable of the service, its gunicorn settings and its commands: these, ZDM_*, GUNICORN_*.
NAMES = ("DATABASE_URL", "DATABASE_REPLICA_URLS", "PORT", "PROMETHEUS_MULTIPROC_DIR")
# The files prometheus_client writes in PROMETHEUS_MULTIPROC_DIR: <kind>_<pid>.db.
METRICS_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_[0-9]+\.db")


class ConfigError(Exception):
    """The environment does not describe a service that can start."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("Configuration is not valid:\n  - " + "\n  - ".join(problems))
        self.problems = problems


def setting(env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    """Return the value without surrounding blanks, None when unset; a blank one is a problem."""
    value = env.get(name)
    if value is None:
        return None
    if not value.strip():
        problems.append(
            f"{name} is set but empty: give it a value, or remove it to leave it unset."
        )
        return None
    return value.strip()


def blank_settings(env: Mapping[str, str]) -> list[str]:
    """The refusals of every variable of ours that is set but empty or blank."""
    problems: list[str] = []
    for name in sorted(env):
        if name.startswith(("ZDM_", "GUNICORN_")) or name in NAMES:
            setting(env, name, problems)
    return problems


def refuse(problems: list[str]) -> None:
    """Stop a command or a start-up with one line per problem, and exit status 1."""
    if problems:
        raise SystemExit("\n".join(f"zdm-monitor: {problem}" for problem in problems))


def metrics_folder(env: Mapping[str, str], problems: list[str]) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR: an absolute path holding no *.db file but ours, or unset.

    prometheus_client sums every *.db file of the folder, so someone else's would break /metrics.
    """
    folder = setting(env, "PROMETHEUS_MULTIPROC_DIR", problems)
    if folder is None:
        return None
    where = Path(folder)
    if not where.is_absolute():
        problems.append(
            f"PROMETHEUS_MULTIPROC_DIR={folder!r} is not an absolute path: name the folder for "
            "the workers' metrics files (/run/zdm-monitor/metrics), or unset it for a private "
            "temporary one."
        )
    elif where.exists() and not where.is_dir():
        problems.append(f"PROMETHEUS_MULTIPROC_DIR={folder!r} is not a folder.")
    elif foreign := sorted(
        p.name for p in where.glob("*.db") if not METRICS_FILE.fullmatch(p.name)
    ):
        problems.append(
            f"PROMETHEUS_MULTIPROC_DIR={folder!r} holds {', '.join(foreign)}, not metrics files "
            "of ours: give the metrics a folder of their own."
        )
    else:
        return folder
    return None
