"""A private PostgreSQL under a data folder, from the binaries the pgserver package ships."""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from contextlib import closing
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote

import psycopg2

# PostgreSQL refuses to run as root; root sessions run it as this system user.
SYSTEM_USER = "zdm-postgres"
# A Unix socket path must fit in sun_path (108 bytes on Linux).
MAX_SOCKET_DIR = 90


class EmbeddedPostgresError(RuntimeError):
    """A PostgreSQL program failed; the message carries what it printed."""


def bin_dir() -> Path:
    spec = find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The pgserver package is not installed: pip install pgserver")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def service_user() -> str | None:
    """The user PostgreSQL and PgBouncer run as: SYSTEM_USER for root, else None (this one)."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def own_folder(folder: Path, user: str | None) -> None:
    """Create a private folder owned by user (a system user made on first use), reachable from /."""
    folder.mkdir(parents=True, exist_ok=True)
    if user is None:
        folder.chmod(0o700)
        return
    if subprocess.run(["id", user], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o700)
    for parent in folder.parents:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


class EmbeddedPostgres:
    """Initialise, start and stop one PostgreSQL cluster that listens on a Unix socket only."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.user = service_user()

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        # Drop root's groups too: a root group match would deny what "other" allows.
        result = subprocess.run(
            [str(bin_dir() / program), *args],
            capture_output=True,
            text=True,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"{program} failed: {result.stderr.strip()}")
        return result

    def _prepare(self) -> None:
        own_folder(self.pgdata, self.user)

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            self._run("pg_ctl", "status", "-D", str(self.pgdata))
        except EmbeddedPostgresError:
            return False
        return True

    def start(self) -> str:
        """Start the server (initialising it the first time) and return its URL."""
        if not self.running():
            self._prepare()
            if not (self.pgdata / "PG_VERSION").exists():
                self._run(
                    "initdb",
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                )
            socket_dir = self.pgdata
            if len(str(socket_dir)) > MAX_SOCKET_DIR:
                socket_dir = Path(tempfile.mkdtemp(prefix="zdm-pg-"))
                socket_dir.chmod(0o777)
            options = f"-c listen_addresses='' -k {socket_dir}"
            self._run(
                "pg_ctl",
                "start",
                "-w",
                "-D",
                str(self.pgdata),
                "-o",
                options,
                "-l",
                str(self.pgdata / "server.log"),
            )
        return self.url()

    def replicate(self, primary: EmbeddedPostgres, slot: str) -> str:
        """Start this cluster as a streaming replica of the running primary; return its URL.

        The first time, pg_basebackup -R copies the primary and writes the standby settings,
        with a replication slot so that the primary keeps the WAL the replica has not received.
        """
        if not (self.pgdata / "PG_VERSION").exists():
            self._prepare()
            primary.drop_slot(slot)
            self._run(
                "pg_basebackup",
                *("--pgdata", str(self.pgdata), "--dbname", primary.url()),
                *("--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast"),
                *("--create-slot", "--slot", slot),
            )
            # With its socket in its data folder, the primary's socket lock file came along.
            for stale in self.pgdata.glob(".s.PGSQL.*"):
                stale.unlink()
        return self.start()

    def drop_slot(self, slot: str) -> None:
        """Drop a replication slot a replica that no longer exists left behind."""
        with closing(psycopg2.connect(self.url())) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s",
                    (slot,),
                )

    def url(self) -> str:
        """Build the URL from postmaster.pid, which names the port and socket folder in use."""
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        port, socket_dir = lines[3], lines[4]
        return f"postgresql://postgres@/postgres?host={quote(socket_dir, safe='')}&port={port}"

    def stop(self) -> None:
        """Stop the server, letting it finish what it is doing first (fast shutdown)."""
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))
