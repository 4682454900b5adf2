"""A private PostgreSQL under a data folder, from the binaries the pgserver package ships."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import closing, suppress
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote

import psycopg2

# PostgreSQL refuses to run as root; root sessions run it as this system user.
SYSTEM_USER = "zdm-postgres"
# Where root sessions keep what that user must reach when the checkout or the data folder lies
# in a folder others cannot enter (root's home, a mktemp -d folder): a copy of the binaries and
# the data folders themselves, each linked from where it was asked for. No one's folder is
# opened up to let the user in.
SERVICE_HOME = Path("/var/lib/zdm-postgres")
# A Unix socket path must fit in sun_path (108 bytes on Linux).
MAX_SOCKET_DIR = 90


class EmbeddedPostgresError(RuntimeError):
    """A PostgreSQL program failed; the message carries what it printed."""


def installed_binaries() -> Path:
    spec = find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "The embedded PostgreSQL needs the pgserver package, which zdm-monitor-dev requires:"
            " pip install -e ./dev (make run and make test install it), or set DATABASE_URL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def bin_dir() -> Path:
    """pgserver's PostgreSQL binaries, copied once where the service user can run them."""
    installed = installed_binaries()
    user = service_user()
    if user is None or reachable(installed / "bin" / "postgres", user):
        return installed / "bin"
    # The copy keeps site-packages' layout: the binaries find their libraries at
    # $ORIGIN/../../../pgserver.libs.
    site = installed.parents[1]
    copy = SERVICE_HOME / f"pgserver-{version('pgserver')}"
    if not copy.exists():
        prepare_service_home()
        staging = Path(tempfile.mkdtemp(prefix="pgserver-", dir=SERVICE_HOME))
        for part in ("pgserver/pginstall", "pgserver.libs"):
            if (site / part).exists():
                shutil.copytree(site / part, staging / "tree" / part, symlinks=True)
        (staging / "tree").chmod(0o755)
        with suppress(OSError):  # another process copied it first
            (staging / "tree").rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return copy / "pgserver" / "pginstall" / "bin"


def service_user() -> str | None:
    """The user PostgreSQL and PgBouncer run as: SYSTEM_USER for root, else None (this one)."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def ensure_user(user: str) -> pwd.struct_passwd:
    """The system user, created on first use."""
    try:
        return pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(user)


def reachable(path: Path, user: str) -> bool:
    """Whether user may walk down to path: every folder above it searchable by that user."""
    entry = ensure_user(user)
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in reversed(path.parents):
        try:
            info = folder.stat()
        except OSError:
            return False
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid in groups:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return False
    return True


def prepare_service_home() -> None:
    """SERVICE_HOME and its folders: root's, searchable by all, as /var/lib itself is."""
    for folder in (SERVICE_HOME, SERVICE_HOME / "folders"):
        folder.mkdir(mode=0o755, exist_ok=True)


def own_folder(folder: Path, user: str | None) -> Path:
    """A private folder at folder (mode 700) that user owns and can reach; return its real path.

    When user cannot reach folder's place, the folder lives under SERVICE_HOME instead, and a
    link at folder leads there. Leftovers whose link is gone are removed on the way.
    """
    if folder.is_symlink():
        folder = folder.resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)  # folders that do not exist yet are ours
    if user is None or reachable(folder, user):
        folder.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = ensure_user(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
        return folder
    prepare_service_home()
    remove_abandoned_folders()
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    real = SERVICE_HOME / "folders" / f"{key}-{folder.name}"
    entry = ensure_user(user)
    real.mkdir(mode=0o700, exist_ok=True)
    os.chown(real, entry.pw_uid, entry.pw_gid)
    real.with_suffix(".origin").write_text(str(folder))
    if folder.is_dir():
        if any(folder.iterdir()):
            raise EmbeddedPostgresError(
                f"{folder} holds files, and {user} cannot reach it: move them where {user} can,"
                " or remove the folder."
            )
        folder.rmdir()  # made empty for us (pytest's mktemp): its place takes the link
    folder.symlink_to(real, target_is_directory=True)
    return real


def remove_abandoned_folders() -> None:
    """Remove relocated folders whose link no longer leads to them and that nothing runs in."""
    for origin_file in (SERVICE_HOME / "folders").glob("*.origin"):
        real = origin_file.with_suffix("")
        origin = Path(origin_file.read_text())
        if origin.is_symlink() and origin.resolve() == real:
            continue
        if server_alive(real):
            continue
        shutil.rmtree(real, ignore_errors=True)
        origin_file.unlink(missing_ok=True)


def remove_folders_under(root: Path) -> None:
    """Remove the relocated folders asked for below root (a test run's temporary folder)."""
    for origin_file in (SERVICE_HOME / "folders").glob("*.origin"):
        if Path(origin_file.read_text()).is_relative_to(root.resolve()):
            real = origin_file.with_suffix("")
            if server_alive(real):
                EmbeddedPostgres(real).stop()
            shutil.rmtree(real, ignore_errors=True)
            origin_file.unlink(missing_ok=True)


def server_alive(pgdata: Path) -> bool:
    """Whether the postmaster that postmaster.pid names still runs."""
    try:
        os.kill(int((pgdata / "postmaster.pid").read_text().split()[0]), 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


class EmbeddedPostgres:
    """Initialise, start and stop one PostgreSQL cluster that listens on a Unix socket only."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.user = service_user()
        # Whether start() started the server; one found running belongs to someone else.
        self.started = False

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        # Drop root's groups too: a root group match would deny what "other" allows.
        result = subprocess.run(
            [str(bin_dir() / program), *args],
            capture_output=True,
            text=True,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            # Started where the service user may be, not in a folder it cannot enter.
            cwd="/" if self.user else None,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"{program} failed: {result.stderr.strip()}")
        return result

    def _prepare(self) -> None:
        self.pgdata = own_folder(self.pgdata, self.user)

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
            self.started = True
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
