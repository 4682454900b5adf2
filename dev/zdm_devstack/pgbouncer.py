"""A private PgBouncer (Debian's package) on loopback, with config/pgbouncer.ini's pooling."""

from __future__ import annotations

import configparser
import io
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import psycopg2
from psycopg2.extensions import parse_dsn

from .postgres import own_folder, service_user
from .stack import StackError

# The checkout's sample, which docs/scaling-out.md shows for /etc/pgbouncer/pgbouncer.ini; the
# workshop is installed from the checkout (editable), here in dev/zdm_devstack/.
SAMPLE = Path(__file__).resolve().parents[2] / "config" / "pgbouncer.ini"
START_TIMEOUT_S = 10.0
# Where a server is. Not who logs in: PgBouncer logs in as each client's own user, so a
# SELECT-only client stays SELECT-only on the server.
SERVER_KEYS = ("host", "port", "dbname")


def binary() -> str:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(found).exists():
        raise StackError("PgBouncer is not installed: make pgbouncer (apt-get install pgbouncer)")
    return found


def server_entry(url: str) -> str:
    """A [databases] line's value for the server a libpq URL names."""
    parts = parse_dsn(url)
    return " ".join(f"{key}={parts[key]}" for key in SERVER_KEYS if parts.get(key))


class PgBouncer:
    """One PgBouncer process: the sample's [pgbouncer] settings, these servers, loopback only.

    `databases` maps a PgBouncer database name to the URL of the server behind it; `users`
    holds the logins (and passwords) clients may use. Clients are trusted on loopback.
    """

    def __init__(
        self,
        folder: Path,
        port: int,
        databases: Mapping[str, str],
        users: Mapping[str, str | None],
        pool_size: int | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.port = port
        self.databases = dict(databases)
        self.users = dict(users)
        self.pool_size = pool_size
        self.user = service_user()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str, user: str, password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def show(self, what: str, user: str) -> list[dict[str, Any]]:
        """SHOW STATS, SHOW POOLS ... on PgBouncer's console, as rows of column -> value."""
        with closing(psycopg2.connect(self.url("pgbouncer", user))) as conn:
            conn.autocommit = True  # the console takes no transaction block
            with conn.cursor() as cur:
                cur.execute(f"SHOW {what}")
                assert cur.description is not None
                columns = [column.name for column in cur.description]
                return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]

    def config(self) -> str:
        """config/pgbouncer.ini with its servers, port and authentication replaced."""
        parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
        parser.read(SAMPLE)
        parser["databases"] = {name: server_entry(url) for name, url in self.databases.items()}
        settings = parser["pgbouncer"]
        settings.update(
            listen_addr="127.0.0.1",
            listen_port=str(self.port),
            auth_type="trust",
            auth_file=str(self.folder / "userlist.txt"),
            # SHOW STATS and SHOW POOLS on the console (database "pgbouncer") for these users.
            stats_users=", ".join(self.users),
        )
        if self.pool_size is not None:
            settings["default_pool_size"] = str(self.pool_size)
        text = io.StringIO()
        parser.write(text)
        return text.getvalue()

    def start(self, output: IO[bytes] | None = None) -> None:
        """Write the files and start PgBouncer in the foreground of its own session."""
        self.folder = own_folder(self.folder, self.user)
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(self.config())
        users = "".join(f'"{name}" "{secret or ""}"\n' for name, secret in self.users.items())
        userlist = self.folder / "userlist.txt"
        userlist.write_text(users)
        for path in (ini, userlist):
            path.chmod(0o600)
            if self.user is not None:
                shutil.chown(path, self.user, self.user)
        # PgBouncer refuses to run as root: as root, it runs as PostgreSQL's user.
        self.process = subprocess.Popen(
            [binary(), str(ini)],
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            start_new_session=True,
            stdout=output,
            stderr=output,
        )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(f"PgBouncer exited with status {self.process.returncode}")
            with closing(socket.socket()) as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise StackError(f"PgBouncer did not listen on 127.0.0.1:{self.port} in time")

    def stop(self) -> None:
        """Shut down at once: its clients (gunicorn) are stopped first."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
