"""The zdm-monitor command: what an operator runs against a production database (the workshop's
is zdm-dev, dev/)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import click
import jwt
import psycopg2
import psycopg2.errors

from ..data.schema import apply_schema
from ..environment import setting
from .envfile import read_env_file
from .nginx import render_site
from .preflight import Preflight
from .report import OK, WARN, Result, passed, summary

DEFAULT_TOKEN_TTL = 7 * 24 * 3600


def variable(name: str) -> str | None:
    """An environment variable by the service's rule (environment.setting): blank is refused."""
    problems: list[str] = []
    value = setting(os.environ, name, problems)
    if problems:
        raise click.UsageError(problems[0])
    return value


def database_url() -> str:
    url = variable("DATABASE_URL")
    if url is None:
        raise click.UsageError("DATABASE_URL is not set.")
    return url


def make_token(secret: str, subject: str, ttl: int) -> str:
    """Sign an HS256 bearer token with the audience and issuer the service expects."""
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + ttl}
    for claim, name in (("aud", "ZDM_JWT_AUDIENCE"), ("iss", "ZDM_JWT_ISSUER")):
        value = variable(name)
        if value is not None:
            claims[claim] = value
    return jwt.encode(claims, secret, algorithm="HS256")


def configured_secret() -> str | None:
    """ZDM_JWT_SECRET, refusing to sign where the service verifies with a public key."""
    if variable("ZDM_JWT_PUBLIC_KEY"):
        raise click.ClickException(
            "ZDM_JWT_PUBLIC_KEY is set: the service verifies tokens signed elsewhere (the ZDM "
            "API) and cannot sign one itself."
        )
    return variable("ZDM_JWT_SECRET")


def print_token(secret: str, source: str, subject: str, ttl: int) -> None:
    """The token on stdout; which key signed it on stderr, so $(zdm-monitor token) stays clean."""
    click.echo(f"Signed with {source}.", err=True)
    click.echo(make_token(secret, subject, ttl))


subject_option = click.option(
    "--subject", default="dashboard", show_default=True, help="The token's sub claim."
)
ttl_option = click.option(
    "--ttl",
    default=DEFAULT_TOKEN_TTL,
    show_default=True,
    type=click.IntRange(min=1),
    help="Lifetime in seconds.",
)


@click.group()
def main() -> None:
    """ZDM backup-job monitoring service."""


@main.command("init-db")
def init_db() -> None:
    """Create the missing ZDM tables and indexes in DATABASE_URL and install the read function."""
    with closing(psycopg2.connect(database_url())) as conn:
        try:
            apply_schema(conn)
        except psycopg2.errors.LockNotAvailable:
            raise click.ClickException(
                "ZDM's writers held a table init-db must change (an old trigger to drop, an index"
                " to create) for a minute: nothing was changed; run init-db again."
            ) from None
    click.echo("Schema applied.")


@main.command()
@subject_option
@ttl_option
def token(subject: str, ttl: int) -> None:
    """Print an HS256 bearer token signed with ZDM_JWT_SECRET."""
    secret = configured_secret()
    if secret is None:
        raise click.ClickException("ZDM_JWT_SECRET is not set: give the key the service uses.")
    print_token(secret, "ZDM_JWT_SECRET", subject, ttl)


@main.command("nginx-config")
@click.option("--listen", default="80", show_default=True, help="nginx's listen address.")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    default=["127.0.0.1:8000"],
    show_default=True,
    help="A gunicorn node; repeat it for several.",
)
@click.option("--server-name", default="localhost", show_default=True)
@click.option("--log-dir", default="/var/log/nginx", show_default=True)
def nginx_config(listen: str, upstreams: tuple[str, ...], server_name: str, log_dir: str) -> None:
    """Print the nginx site (the package's ops/nginx-site.conf) filled in for these values."""
    click.echo(render_site(listen, list(upstreams), Path(log_dir), server_name))


@main.command()
@click.option(
    "--token",
    metavar="TOKEN",
    help="Also check that this bearer token verifies, as the service would ('-': from stdin).",
)
@click.option(
    "--allow-writer", is_flag=True, help="A role that may write: a warning, not a failure."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for automation.")
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="Check this file's settings, read as systemd's EnvironmentFile= reads it, instead of "
    "the environment's.",
)
def check(token: str | None, allow_writer: bool, as_json: bool, env_file: Path | None) -> None:
    """Check what the service needs before it serves: one line each, exit 1 if one fails.

    The settings, the database and its version, the read functions, a read-only role, the
    replicas' lag and the token key, as the service itself would find them.
    """
    if token == "-":
        token = sys.stdin.readline().strip()
    env: Mapping[str, str] = os.environ
    results: list[Result] = []
    if env_file is not None:
        read = read_env_file(env_file.read_text(encoding="utf-8"))
        env = read.variables
        results.append(
            Result("env-file", OK, f"{env_file}: {len(env)} variables, as systemd reads them")
        )
        results += [Result("env-file", WARN, d) for d in read.disagreements]
    results += Preflight(env, token, allow_writer).run()
    if as_json:
        checks = [asdict(r) for r in results]
        click.echo(json.dumps({"ok": passed(results), "checks": checks}, ensure_ascii=False))
    else:
        click.echo("\n".join([*(r.line() for r in results), summary(results)]))
    sys.exit(0 if passed(results) else 1)
