"""The zdm-monitor command: schema, demo data, tokens and the development server."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from types import FrameType

import click
import jwt
import psycopg2

from .db import apply_schema, load_demo
from .embedded import EmbeddedPostgres

DEV_SECRET_FILE = "dev-jwt-secret"
DEV_TOKEN_TTL = 7 * 24 * 3600


def data_dir() -> Path:
    return Path(os.environ.get("ZDM_DATA_DIR") or "var").resolve()


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise click.UsageError("DATABASE_URL is not set.")
    return url


def dev_secret(folder: Path) -> str:
    """Return this data folder's development secret, creating it the first time."""
    path = folder / DEV_SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def make_token(secret: str, subject: str, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + ttl}
    for claim, name in (("aud", "ZDM_JWT_AUDIENCE"), ("iss", "ZDM_JWT_ISSUER")):
        if os.environ.get(name):
            claims[claim] = os.environ[name]
    return jwt.encode(claims, secret, algorithm="HS256")


def prepare_database(url: str) -> bool:
    """Apply the schema and load the demo data into an empty database."""
    with closing(psycopg2.connect(url)) as conn:
        apply_schema(conn)
        return load_demo(conn)


@click.group()
def main() -> None:
    """ZDM backup-job monitoring service."""


@main.command("init-db")
def init_db() -> None:
    """Create the ZDM tables and indexes that are missing in DATABASE_URL."""
    with closing(psycopg2.connect(database_url())) as conn:
        apply_schema(conn)
    click.echo("Schema applied.")


@main.command("load-demo")
def load_demo_command() -> None:
    """Load the demo data set into DATABASE_URL if it holds no jobs yet."""
    loaded = prepare_database(database_url())
    click.echo("Demo data loaded." if loaded else "Jobs already present; demo data not loaded.")


@main.command()
@click.option("--subject", default="dashboard", show_default=True, help="The token's sub claim.")
@click.option("--ttl", default=DEV_TOKEN_TTL, show_default=True, help="Lifetime in seconds.")
def token(subject: str, ttl: int) -> None:
    """Print an HS256 bearer token signed with ZDM_JWT_SECRET or the development secret."""
    click.echo(make_token(os.environ.get("ZDM_JWT_SECRET") or dev_secret(data_dir()), subject, ttl))


@main.command()
@click.option("--port", envvar="PORT", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def serve(port: int, workers: int) -> None:
    """Serve on 127.0.0.1 through gunicorn, on an embedded PostgreSQL unless DATABASE_URL is set."""
    folder = data_dir()
    env = dict(os.environ)
    postgres = None if env.get("DATABASE_URL") else EmbeddedPostgres(folder / "postgres")
    try:
        if postgres is not None:
            env["DATABASE_URL"] = postgres.start()
            click.echo(f"PostgreSQL: embedded, data in {postgres.pgdata}")
        if prepare_database(env["DATABASE_URL"]):
            click.echo("Demo data loaded.")
        if not env.get("ZDM_JWT_SECRET") and not env.get("ZDM_JWT_PUBLIC_KEY"):
            env["ZDM_JWT_SECRET"] = dev_secret(folder)
        sys.exit(run_gunicorn(env, port, workers))
    finally:
        if postgres is not None:
            postgres.stop()
            click.echo("PostgreSQL stopped.")


def run_gunicorn(env: dict[str, str], port: int, workers: int) -> int:
    """Run gunicorn in the foreground; Ctrl-C or SIGTERM stop it gracefully."""
    base = f"http://127.0.0.1:{port}"
    if "ZDM_JWT_PUBLIC_KEY" not in env:
        bearer = make_token(env["ZDM_JWT_SECRET"], "dashboard", DEV_TOKEN_TTL)
        click.echo(
            f"\nServing on {base}  (API docs: {base}/api/docs)\n"
            f"Bearer token (valid 7 days):\n  {bearer}\n"
            "Try:\n"
            f'  curl -X GET "{base}/api/backups/monitoring/job/1" \\\n'
            f'    -H "Authorization: Bearer {bearer}"\n'
        )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--access-logfile",
        "-",
        # gunicorn's control socket lives at one path per user: instances would share it.
        "--no-control-socket",
        "zdm_monitor:create_app()",
    ]
    # gunicorn gets its own session so that Ctrl-C reaches it only through this process, as
    # SIGTERM: a graceful stop that lets in-flight requests finish.
    child = subprocess.Popen(command, env=env, start_new_session=True)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return child.wait()
