"""The zdm-monitor command: schema, demo data, tokens and the local stack."""

from __future__ import annotations

import os
import sys
from contextlib import closing
from pathlib import Path

import click
import psycopg2

from .cluster import Cluster
from .db import apply_schema
from .generate import generate
from .stack import DEV_TOKEN_TTL, Stack, dev_secret, make_token, prepare_database, render_site


def data_dir() -> Path:
    return Path(os.environ.get("ZDM_DATA_DIR") or "var").resolve()


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise click.UsageError("DATABASE_URL is not set.")
    return url


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


@main.command("generate")
@click.option("--jobs", required=True, type=click.IntRange(min=0), help="Jobs 1..N.")
@click.option("--servers", required=True, type=click.IntRange(min=1), help="Servers.")
@click.option("--lines", required=True, type=click.IntRange(min=0), help="Log lines per job.")
@click.option("--deep-lines", default=20_000, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=1, show_default=True, type=int)
def generate_command(jobs: int, servers: int, lines: int, deep_lines: int, seed: int) -> None:
    """Replace the data in DATABASE_URL with a generated set (job 1 gets --deep-lines lines)."""
    with closing(psycopg2.connect(database_url())) as conn:
        apply_schema(conn)
        loaded = generate(
            conn, jobs=jobs, servers=servers, lines=lines, deep_lines=deep_lines, seed=seed
        )
    seconds = loaded["seconds"]
    click.echo(
        f"Loaded {loaded['servers']:,} servers, {loaded['repositories']} repositories, "
        f"{loaded['jobs']:,} jobs with runtime halves, {loaded['log_lines']:,} log lines "
        f"in {seconds:.1f} s ({loaded['rows'] / max(seconds, 1e-9):,.0f} rows/s)."
    )
    click.echo("  " + ", ".join(f"{k} {v:.1f} s" for k, v in loaded["timings"].items()))


@main.command()
@click.option("--subject", default="dashboard", show_default=True, help="The token's sub claim.")
@click.option("--ttl", default=DEV_TOKEN_TTL, show_default=True, help="Lifetime in seconds.")
def token(subject: str, ttl: int) -> None:
    """Print an HS256 bearer token signed with ZDM_JWT_SECRET or the development secret."""
    click.echo(make_token(os.environ.get("ZDM_JWT_SECRET") or dev_secret(data_dir()), subject, ttl))


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
    """Print config/nginx/zdm-monitor.conf filled in for these values."""
    click.echo(render_site(listen, list(upstreams), Path(log_dir), server_name))


@main.command()
@click.option("--port", envvar="PORT", default=8000, show_default=True, type=int)
@click.option(
    "--workers", type=int, help="gunicorn workers [default: 2, or 2 x cores + 1 with nginx]"
)
@click.option("--nginx", is_flag=True, help="Put nginx on PORT in front of gunicorn on PORT+1.")
def serve(port: int, workers: int | None, nginx: bool) -> None:
    """Serve on 127.0.0.1 through gunicorn, on an embedded PostgreSQL unless DATABASE_URL is set."""
    stack = Stack(data_dir(), port, nginx=nginx, workers=workers or (None if nginx else 2))
    stack.catch_signals()
    try:
        stack.start()
        if stack.postgres is not None:
            click.echo(f"PostgreSQL: embedded, data in {stack.postgres.pgdata}")
        if stack.demo_loaded:
            click.echo("Demo data loaded.")
        banner(stack)
        status = stack.wait()
    finally:
        stack.stop()
        click.echo("Stopped" + (", PostgreSQL stopped." if stack.postgres else "."))
    sys.exit(status)


def banner(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.port}"
    click.echo(f"\nServing: {stack.where()}  (API docs: {base}/api/docs)")
    if stack.env.get("ZDM_JWT_PUBLIC_KEY"):
        return
    bearer = stack.env.get("ZDM_DEV_TOKEN") or make_token(
        stack.env["ZDM_JWT_SECRET"], "dashboard", DEV_TOKEN_TTL
    )
    click.echo(
        f"Bearer token (valid 7 days):\n  {bearer}\n"
        "Try:\n"
        f'  curl -X GET "{base}/api/backups/monitoring/job/1" \\\n'
        f'    -H "Authorization: Bearer {bearer}"\n'
    )


@main.command("cluster")
@click.option(
    "--port",
    envvar="PORT",
    default=8000,
    show_default=True,
    type=int,
    help="nginx's port; the gunicorn nodes and PgBouncer take the next ones.",
)
@click.option("--workers", default=2, show_default=True, type=int, help="Workers per node.")
def cluster_command(port: int, workers: int) -> None:
    """Serve through nginx, two gunicorn nodes, PgBouncer, a primary and a streaming replica."""
    cluster = Cluster(data_dir(), port, workers=workers)
    cluster.catch_signals()
    status = 1
    try:
        cluster.start()
        if cluster.demo_loaded:
            click.echo("Demo data loaded.")
        click.echo(f"Cluster on loopback, data in {cluster.folder}:")
        for name, where in cluster.layers():
            click.echo(f"  {name:<10} {where}")
        banner(cluster)
        status = cluster.wait()
    finally:
        cluster.stop()
        click.echo("Stopped nginx, the gunicorn nodes, PgBouncer, the replica and the primary.")
    sys.exit(status)
