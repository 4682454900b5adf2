"""The local stack: PostgreSQL (embedded unless DATABASE_URL), gunicorn and, optionally, nginx."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from string import Template
from typing import IO

import psycopg2
from psycopg2 import sql

from zdm_monitor.environment import blank_settings
from zdm_monitor.ops.cli import DEFAULT_TOKEN_TTL, make_token
from zdm_monitor.ops.nginx import render_site

from .agent import MovingMark, restore_left_demo
from .app import DEV_TOKEN_VARIABLE
from .demo import prepare_database
from .postgres import EmbeddedPostgres

DEV_SECRET_FILE = "dev-jwt-secret"
# Held (flock) by the stack using a data folder, for as long as it runs.
LOCK_FILE = "stack.lock"
# The app the stack's gunicorn serves: the service's, with the live page offering the token.
DEV_APP = "zdm_devstack.app:create_app()"
# The service's gunicorn settings, as production names them.
GUNICORN_CONFIG = "python:zdm_monitor.runtime.gunicorn_conf"
SERVICE_APP = "zdm_monitor:create_app()"
# Room for the fault drills' 2,500 held connections (each request nginx passes on holds two).
NGINX_MAIN = """\
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/error.log notice;
events { worker_connections 4096; }
http {
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    include $prefix/zdm-monitor.conf;
}
"""


# The role the service reads as, with what it needs: see docs/deploying.md, "Database role".
SERVICE_ROLE = "zdm_monitor"
READER_GRANTS = """
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON server, repository, backup, backup_info, backup_log TO {role};
GRANT EXECUTE ON FUNCTION zdm_monitor_job_snapshot, zdm_monitor_server_snapshot,
    zdm_monitor_written TO {role};
"""


class StackError(RuntimeError):
    """A part of the stack could not start."""


def check_ports_free(ports: list[int]) -> None:
    """Refuse at once when something listens on a port the stack needs."""
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise StackError(
                    f"Port {port} on 127.0.0.1 is in use: stop what listens there, or choose"
                    " another PORT."
                ) from None


def dev_secret(folder: Path) -> str:
    """Return this data folder's development secret, creating it the first time."""
    path = folder / DEV_SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def use_dev_secret(env: dict[str, str], folder: Path) -> None:
    """Without a configured key, sign with the folder's development secret and offer a token."""
    if "ZDM_JWT_SECRET" in env or "ZDM_JWT_PUBLIC_KEY" in env:
        return
    secret = env["ZDM_JWT_SECRET"] = dev_secret(folder)
    # The live page at / offers this token; only a development secret's is ever offered.
    env[DEV_TOKEN_VARIABLE] = make_token(secret, "dashboard", DEFAULT_TOKEN_TTL)


def create_reader(url: str, role: str, password: str | None = None) -> None:
    """Create (once) a login role that may only read the ZDM tables, as the service should run."""
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT FROM pg_roles WHERE rolname = %s", (role,))
        name = sql.Identifier(role)
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(name), (password,))
        cur.execute(sql.SQL(READER_GRANTS).format(role=name))


def wait_until_up(name: str, url: str, seconds: float, process: subprocess.Popen[bytes]) -> None:
    """Poll the URL until it answers, failing early if the process dies."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{name} exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"{url} did not answer within {seconds:.0f} s")


def spawn_gunicorn(
    env: dict[str, str],
    port: int,
    run_dir: Path,
    output: IO[bytes] | None = None,
    app: str = DEV_APP,
) -> subprocess.Popen[bytes]:
    """Start gunicorn with the packaged settings on 127.0.0.1:port and wait until it answers.

    Its pid file and metrics folder go in run_dir. It gets its own session, so Ctrl-C reaches
    it only through whoever started it, as a graceful SIGTERM.
    """
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "metrics"),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        GUNICORN_CONFIG,
        "--pid",
        str(run_dir / "gunicorn.pid"),
        app,
    ]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=output, stderr=output
    )
    wait_until_up("gunicorn", f"http://127.0.0.1:{port}/healthz", 30, process)
    return process


def start_nginx(
    prefix: Path, port: int, gunicorn_ports: list[int], output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start nginx on 127.0.0.1:port in front of the gunicorn nodes, files under prefix."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise StackError("nginx is not installed: apt-get install nginx")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    # nginx's workers run as an unprivileged user when started by root.
    for folder in (prefix / "tmp", *(prefix / "tmp").iterdir()):
        folder.chmod(0o1777)
    (prefix / "zdm-monitor.conf").write_text(
        render_site(
            f"127.0.0.1:{port}",
            [f"127.0.0.1:{p}" for p in gunicorn_ports],
            prefix,
            "localhost 127.0.0.1",
        )
    )
    (prefix / "nginx.conf").write_text(Template(NGINX_MAIN).substitute(prefix=prefix))
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        start_new_session=True,
        stdout=output,
        stderr=output,
    )
    wait_until_up("nginx", f"http://127.0.0.1:{port}/healthz", 10, process)
    return process


class Stack:
    """Start and stop the service's processes; Ctrl-C or SIGTERM stops them gracefully."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        nginx: bool = False,
        workers: int | None = None,
        env: dict[str, str] | None = None,
        output: IO[bytes] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.with_nginx = nginx
        self.workers = workers
        self.env = dict(os.environ if env is None else env)
        self.output = output
        self.postgres: EmbeddedPostgres | None = None
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.nginx: subprocess.Popen[bytes] | None = None
        self.demo_loaded = False
        self.demo_restored = False  # put back as shipped: a demo-agent had left it moved
        self.service_url = ""  # what gunicorn reads: the embedded server as SERVICE_ROLE
        self.stopping = False
        self._lock: IO[str] | None = None

    @property
    def gunicorn_port(self) -> int:
        return self.port + 1 if self.with_nginx else self.port

    @property
    def nginx_dir(self) -> Path:
        return self.data_dir / "nginx"

    def ports(self) -> list[int]:
        """The loopback ports the stack listens on."""
        return [self.port, self.gunicorn_port] if self.with_nginx else [self.port]

    def start(self) -> None:
        """Start every part, or refuse at once: a blank setting, the data folder or a port taken."""
        problems = blank_settings(self.env)
        if problems:
            raise StackError("\n".join(problems))
        self._take_data_folder()
        check_ports_free(self.ports())
        try:
            self._start_parts()
        except BaseException:
            self.stop()
            raise

    def _take_data_folder(self) -> None:
        """Hold the data folder's lock, so that a second stack on it refuses before doing harm."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.data_dir / LOCK_FILE).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise StackError(
                f"The data folder {self.data_dir} is in use by another zdm-dev serve or"
                f" cluster (pid {holder}). Stop that one first, or give this one its own"
                " ZDM_DATA_DIR."
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def _start_parts(self) -> None:
        self._start_database()
        self._start_gunicorn()
        if self.with_nginx:
            self._start_nginx()

    def _start_database(self) -> None:
        given = self.env.get("DATABASE_URL")
        if given:
            owner = self.service_url = given
        else:
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
            self.env["DATABASE_URL"] = owner = self.postgres.start()
            self.service_url = owner.replace("postgres@", f"{SERVICE_ROLE}@", 1)
        self.demo_loaded = prepare_database(owner)
        with closing(psycopg2.connect(owner)) as conn:
            self.demo_restored = restore_left_demo(conn, MovingMark(self.data_dir, given))
        if not given:
            create_reader(owner, SERVICE_ROLE)
        use_dev_secret(self.env, self.data_dir)

    def _start_gunicorn(self) -> None:
        env = {
            **self.env,
            "DATABASE_URL": self.service_url,
            # Behind nginx one proxy hop is trusted; served directly, none is.
            "ZDM_PROXY_COUNT": self.env.get("ZDM_PROXY_COUNT", "1" if self.with_nginx else "0"),
        }
        if self.workers:
            env["GUNICORN_WORKERS"] = str(self.workers)
        self.gunicorn = spawn_gunicorn(env, self.gunicorn_port, self.data_dir, self.output)

    def _start_nginx(self) -> None:
        self.nginx = start_nginx(self.nginx_dir, self.port, [self.gunicorn_port], self.output)

    def catch_signals(self) -> None:
        """From now on Ctrl-C and SIGTERM ask wait() to return, even while starting."""

        def request_stop(_signum: int, _frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The long-running children wait() watches."""
        return [p for p in (self.gunicorn, self.nginx) if p is not None]

    def where(self) -> str:
        """Where the stack listens, for the banner."""
        base = f"http://127.0.0.1:{self.port}"
        if self.with_nginx:
            return f"nginx on {base} -> gunicorn on 127.0.0.1:{self.gunicorn_port}"
        return base

    def wait(self) -> int:
        """Block until a signal asks to stop or a process dies; return an exit status."""
        children = self.processes()
        while not self.stopping:
            if any(p.poll() is not None for p in children):
                return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """Stop nginx (finishing open requests), then gunicorn (draining), then PostgreSQL."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            self.nginx.wait(timeout=30)
        if self.gunicorn is not None and self.gunicorn.poll() is None:
            self.gunicorn.send_signal(signal.SIGTERM)
            self.gunicorn.wait(timeout=60)
        if self.postgres is not None and self.postgres.started:
            self.postgres.stop()
        self.release_data_folder()

    def release_data_folder(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
