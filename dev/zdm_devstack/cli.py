"""The zdm-dev command, the workshop's: serve, cluster, generate, load-demo, demo-agent, token.

The operator's commands (init-db, check, nginx-config) are the service's own, zdm-monitor.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import closing
from pathlib import Path

import click
import psycopg2
from psycopg2.extensions import connection

from zdm_monitor.data.pool import connection_lost
from zdm_monitor.data.schema import apply_schema
from zdm_monitor.ops.cli import (
    DEFAULT_TOKEN_TTL,
    configured_secret,
    database_url,
    make_token,
    print_token,
    subject_option,
    ttl_option,
    variable,
)
from zdm_monitor.ops.report import first_line

from .agent import Agent, MovingMark, NotTheDemo, restore_left_demo
from .cluster import Cluster
from .demo import prepare_database
from .generate import generate as generate_jobs
from .postgres import EmbeddedPostgres, EmbeddedPostgresError, bin_dir, server_alive
from .stack import DEV_SECRET_FILE, Stack, StackError


@click.group()
def main() -> None:
    """The development workshop of zdm-monitor: local servers, demo data, tokens."""


def data_dir() -> Path:
    return Path(variable("ZDM_DATA_DIR") or "var").resolve()


@main.command("load-demo")
def load_demo() -> None:
    """Load the demo data set into DATABASE_URL if it holds no jobs yet."""
    loaded = prepare_database(database_url())
    click.echo("Demo data loaded." if loaded else "Jobs already present; demo data not loaded.")


@main.command("demo-agent")
@click.option(
    "--interval",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between rounds of writes.",
)
@click.option(
    "--rounds", default=0, type=click.IntRange(min=0), help="Stop after this many (0: never)."
)
def demo_agent(interval: float, rounds: int) -> None:
    """Move the demo: its running jobs advance and log, until stopped; then the demo data is put
    back as shipped. Writes to DATABASE_URL, else to the embedded database of `make run`."""
    given = variable("DATABASE_URL")
    url = given or embedded_url()
    mark = MovingMark(data_dir(), given)
    try:
        conn = psycopg2.connect(url)
    except psycopg2.Error as exc:
        raise click.ClickException(f"the database did not answer ({first_line(exc)}).") from None
    with closing(conn):
        try:
            failed = run_agent(conn, mark, interval, rounds)
        except psycopg2.Error as exc:
            what = "the database went away" if connection_lost(conn, exc) else "a write failed"
            raise click.ClickException(
                f"{what} ({first_line(exc)}): the demo data is left moved; the next `make run`"
                f" or `make demo-agent` on {data_dir()} puts it back as shipped."
            ) from None
    if failed is not None:
        raise click.ClickException(
            f"a write failed ({first_line(failed)}); the demo data is back as shipped."
        )
    click.echo("demo-agent: stopped; the demo data is back as shipped.")


def run_agent(
    conn: connection, mark: MovingMark, interval: float, rounds: int
) -> psycopg2.Error | None:
    """Put back what an earlier agent left moved, move the demo, put it back; the error that
    ended the rounds, if one did. The mark stays when the demo cannot be put back."""
    if restore_left_demo(conn, mark):
        click.echo("demo-agent: the last demo-agent left the demo moved: put back as shipped.")
    try:
        agent = Agent(conn)
    except NotTheDemo as exc:
        raise click.ClickException(str(exc)) from None
    mark.set()
    failed = move(agent, interval, rounds)
    try:
        agent.restore()
    except psycopg2.Error as exc:
        raise (failed or exc) from None  # the first error says what happened
    mark.clear()
    return failed


def move(agent: Agent, interval: float, rounds: int) -> psycopg2.Error | None:
    """Run the rounds until Ctrl-C, SIGTERM or the last; the database error that ended them."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    click.echo(f"demo-agent: writing every {interval:g} s; Ctrl-C stops it and puts the demo back.")
    done = 0
    try:
        while not rounds or done < rounds:
            for line in agent.tick():
                click.echo(f"  {line}")
            done += 1
            if stop.wait(interval):
                break
    except KeyboardInterrupt:
        pass
    except psycopg2.Error as exc:
        # The first error, not what rolling back on the closed connection raised after it.
        while isinstance(exc.__context__, psycopg2.Error):
            exc = exc.__context__
        return exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    return None


def embedded_url() -> str:
    """The URL of the embedded PostgreSQL that `make run` (serve) runs in the data folder."""
    postgres = EmbeddedPostgres(data_dir() / "postgres")
    if not server_alive(postgres.pgdata):
        raise click.ClickException(
            f"No PostgreSQL runs in {postgres.pgdata}: start `make run` first (same ZDM_DATA_DIR), "
            "or set DATABASE_URL."
        )
    return postgres.url()


@main.command()
@click.option("--jobs", required=True, type=click.IntRange(min=0), help="Jobs 1..N.")
@click.option("--servers", required=True, type=click.IntRange(min=1), help="Servers.")
@click.option("--lines", required=True, type=click.IntRange(min=0), help="Log lines per job.")
@click.option("--deep-lines", default=20_000, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=1, show_default=True, type=int)
def generate(jobs: int, servers: int, lines: int, deep_lines: int, seed: int) -> None:
    """Replace the data in DATABASE_URL with a generated set (job 1 gets --deep-lines lines)."""
    with closing(psycopg2.connect(database_url())) as conn:
        apply_schema(conn)
        loaded = generate_jobs(
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
@subject_option
@ttl_option
def token(subject: str, ttl: int) -> None:
    """Print an HS256 token signed with ZDM_JWT_SECRET, else with the data folder's dev secret."""
    secret = configured_secret()
    if secret is not None:
        print_token(secret, "ZDM_JWT_SECRET", subject, ttl)
        return
    path = data_dir() / DEV_SECRET_FILE
    if not path.is_file():
        raise click.ClickException(
            f"No ZDM_JWT_SECRET, and no development secret at {path}: no server has used this "
            "data folder. Run this where `make run` runs (or with its ZDM_DATA_DIR), or set "
            "ZDM_JWT_SECRET to the key the server verifies with."
        )
    print_token(path.read_text().strip(), f"the development secret {path}", subject, ttl)


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
        start(stack)
        describe_database(stack)
        if stack.demo_loaded:
            click.echo("Demo data loaded.")
        if stack.demo_restored:
            click.echo("Demo data put back as shipped: a demo-agent had left it moved.")
        banner(stack)
        status = stack.wait()
    finally:
        stack.stop()
    postgres = stack.postgres
    if postgres is not None and postgres.started:
        click.echo("Stopped, PostgreSQL stopped.")
    elif postgres is not None:
        click.echo(f"Stopped; PostgreSQL in {postgres.pgdata} was already running: left running.")
    else:
        click.echo("Stopped.")
    sys.exit(status)


def start(stack: Stack) -> None:
    """Start the stack, or say in one line why it cannot start (exit status 1)."""
    try:
        stack.start()
    except (StackError, EmbeddedPostgresError) as exc:
        raise click.ClickException(str(exc)) from None


def describe_database(stack: Stack) -> None:
    """Say where the data is and how to reach it with psql or DATABASE_URL."""
    url = stack.env["DATABASE_URL"]
    if stack.postgres is None:
        click.echo("PostgreSQL: DATABASE_URL (not started here)")
        return
    where = stack.data_dir / "postgres"
    kept = "" if where.resolve() == where else f" (kept in {where.resolve()})"
    click.echo(f"PostgreSQL: embedded, data in {where}{kept}")
    click.echo(f"  DATABASE_URL='{url}'")
    click.echo(f"  psql '{url}'   (or {bin_dir() / 'psql'})")


def banner(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.port}"
    click.echo(f"\nServing: {stack.where()}  (API docs: {base}/api/docs)")
    if stack.env.get("ZDM_JWT_PUBLIC_KEY"):
        return
    bearer = stack.env.get("ZDM_DEV_TOKEN") or make_token(
        stack.env["ZDM_JWT_SECRET"], "dashboard", DEFAULT_TOKEN_TTL
    )
    click.echo(
        f"Bearer token (valid 7 days):\n  {bearer}\n"
        "Try:\n"
        f'  curl -X GET "{base}/api/backups/monitoring/job/1" \\\n'
        f'    -H "Authorization: Bearer {bearer}"\n'
    )


@main.command()
@click.option(
    "--port",
    envvar="PORT",
    default=8000,
    show_default=True,
    type=int,
    help="nginx's port; the gunicorn nodes and PgBouncer take the next ones.",
)
@click.option("--workers", default=2, show_default=True, type=int, help="Workers per node.")
def cluster(port: int, workers: int) -> None:
    """Serve through nginx, two gunicorn nodes, PgBouncer, a primary and a streaming replica."""
    running = Cluster(data_dir(), port, workers=workers)
    running.catch_signals()
    status = 1
    try:
        start(running)
        if running.demo_loaded:
            click.echo("Demo data loaded.")
        click.echo(f"Cluster on loopback, data in {running.folder}:")
        for name, where in running.layers():
            click.echo(f"  {name:<10} {where}")
        banner(running)
        status = running.wait()
    finally:
        running.stop()
        click.echo("Stopped nginx, the gunicorn nodes, PgBouncer, the replica and the primary.")
    sys.exit(status)
