"""The wheel, installed as an operator installs it: a fresh virtualenv, no checkout in sight.

The sdist and the wheel are built from this checkout as `make dist` builds them; both hold the
service and nothing of the development workshop (dev/). The wheel is installed into a venv in a
temporary folder; every command then runs from that folder with nothing of the checkout on the
path: `zdm-monitor` offers the operator's commands only, init-db as the database's owner,
`zdm-monitor check` as a role that may only read, nginx-config (the site passes `nginx -t`),
and gunicorn with the packaged settings, reloaded and stopped as the systemd unit does it, from
the unit's own ExecStart. The units pass `systemd-analyze verify` as shipped, before anything
is installed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from configparser import ConfigParser
from contextlib import closing
from pathlib import Path
from string import Template

import psycopg2
import pytest
from psycopg2.extensions import make_dsn
from support.api import JOB_URL, LINUX_EXAMPLE, SECRET, make_token
from support.database import READER, scratch_database
from support.processes import children_of, clean_env, free_port, http_get, stop, wait_until

from zdm_devstack.demo import load_demo
from zdm_devstack.stack import NGINX_MAIN, create_reader

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "config" / "systemd").glob("*.service"))
SCRATCH = "zdm_wheel"
BUILD_THE_APP = """
import importlib.util, os
assert importlib.util.find_spec("pgserver") is None, "pgserver came with a plain install"
assert importlib.util.find_spec("zdm_devstack") is None, "the workshop came with a plain install"
assert importlib.util.find_spec("zdm_monitor").origin.startswith(os.environ["VENV"])
from zdm_monitor import create_app
print(sorted(rule.rule for rule in create_app().url_map.iter_rules())[1])
"""


OPERATOR_COMMANDS = ["check", "init-db", "nginx-config", "token"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel of this checkout, built as `make dist` builds them."""
    folder = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(folder), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def venv(dist: Path) -> Path:
    """The wheel of this checkout installed, with its dependencies, into a new venv."""
    (wheel,) = dist.glob("zdm_monitor-*.whl")
    venv = dist / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv


@pytest.fixture(scope="module")
def scratch(database_url: str, venv: Path) -> Iterator[dict[str, str]]:
    """A database of its own, set up by the wheel's init-db as its owner, with the reader role:
    the owner's URL and the reader's. Each test that uses it can run alone."""
    with scratch_database(database_url, SCRATCH) as owner:
        applied = run(venv, ["zdm-monitor", "init-db"], venv.parent, DATABASE_URL=owner)
        assert applied.returncode == 0, applied.stderr
        create_reader(owner, READER, READER)
        yield {"owner": owner, "reader": make_dsn(owner, user=READER, password=READER)}


def run(venv: Path, command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A command of the venv, from a folder outside the checkout, with nothing of it on the path."""
    settings = clean_env(VENV=str(venv), **env)
    settings.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]],
        cwd=cwd,
        env=settings,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_sdist_holds_the_service_and_not_the_workshop(dist: Path) -> None:
    (sdist,) = dist.glob("zdm_monitor-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert {"setup.cfg", "zdm_monitor/ops/cli.py", "zdm_monitor/data/sql/schema.sql"} <= set(names)
    workshop = [n for n in names if n.startswith("dev/") or "zdm_devstack" in n]
    assert workshop == []


def test_the_wheel_holds_the_service_and_requires_nothing_of_the_workshop(dist: Path) -> None:
    (wheel,) = dist.glob("zdm_monitor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (info,) = {n.split("/")[0] for n in names if ".dist-info/" in n}
        entry_points = ConfigParser(delimiters=("=",))
        entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
        metadata = archive.read(f"{info}/METADATA").decode()
    assert {n.split("/")[0] for n in names} == {"zdm_monitor", info}
    assert [n for n in names if "zdm_devstack" in n] == []
    assert entry_points.sections() == ["console_scripts"]  # no zdm_monitor.commands
    assert dict(entry_points["console_scripts"]) == {"zdm-monitor": "zdm_monitor.ops.cli:main"}
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: gunicorn") for line in requires), requires
    assert [line for line in requires if "pgserver" in line or "zdm-monitor-dev" in line] == []


def test_from_the_wheel_zdm_monitor_offers_the_operator_s_commands_only(venv: Path) -> None:
    helped = run(venv, ["zdm-monitor", "--help"], venv.parent)
    assert helped.returncode == 0, helped.stderr
    section = helped.stdout.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in section.splitlines()] == OPERATOR_COMMANDS
    served = run(venv, ["zdm-monitor", "serve"], venv.parent)
    assert served.returncode == 2
    assert "No such command 'serve'" in served.stderr
    assert not (venv.parent / "var").exists()
    assert not (venv / "bin" / "zdm-dev").exists()


def test_the_wheel_builds_the_app_with_no_postgresql_of_its_own(venv: Path) -> None:
    built = run(
        venv,
        ["python", "-c", BUILD_THE_APP],
        venv.parent,
        DATABASE_URL="postgresql://zdm@127.0.0.1:1/zdm",
        ZDM_JWT_SECRET=SECRET,
    )
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == "/api/backups/monitoring/job/<path:identifier>"


def test_from_the_wheel_init_db_then_check_as_a_reader(venv: Path, scratch: dict[str, str]) -> None:
    checked = run(
        venv,
        ["zdm-monitor", "check"],
        venv.parent,
        DATABASE_URL=scratch["reader"],
        ZDM_JWT_SECRET=SECRET,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAIL" not in checked.stdout


def test_from_the_wheel_the_nginx_site_passes_nginx_t(venv: Path, tmp_path: Path) -> None:
    site = run(
        venv,
        [
            "zdm-monitor",
            "nginx-config",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--upstream",
            "127.0.0.1:8001",
            "--log-dir",
            str(tmp_path),
        ],
        venv.parent,
    )
    assert site.returncode == 0, site.stderr
    (tmp_path / "zdm-monitor.conf").write_text(site.stdout)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    (tmp_path / "nginx.conf").write_text(Template(NGINX_MAIN).substitute(prefix=tmp_path))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tested = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stderr
    assert "test is successful" in tested.stderr


def test_gunicorn_with_the_packaged_settings_serves_reloads_and_stops(
    venv: Path, scratch: dict[str, str], tmp_path: Path
) -> None:
    """The unit's ExecStart, ExecReload (HUP) and stop (TERM), with polls going on throughout."""
    with closing(psycopg2.connect(scratch["owner"])) as conn:
        load_demo(conn)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = clean_env(
        DATABASE_URL=scratch["reader"],
        ZDM_JWT_SECRET=SECRET,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    settings.pop("PYTHONPATH", None)
    log = (tmp_path / "gunicorn.log").open("w")
    gunicorn = subprocess.Popen(
        unit_command(venv),
        cwd=tmp_path,
        env=settings,
        stdout=log,
        stderr=log,
    )
    failures: list[object] = []
    stopping = threading.Event()

    def poll() -> None:
        while not stopping.is_set():
            try:
                status, body = http_get(f"{base}{JOB_URL}1", make_token())
                if status != 200 or body["data"] != LINUX_EXAMPLE:
                    failures.append((status, body))
            except OSError as exc:
                failures.append(exc)

    try:
        assert wait_until(lambda: answers(f"{base}/healthz"), 30), tmp_path / "gunicorn.log"
        status, body = http_get(f"{base}{JOB_URL}1", make_token())
        assert status == 200 and body["data"] == LINUX_EXAMPLE, body
        pollers = [threading.Thread(target=poll) for _ in range(3)]
        for poller in pollers:
            poller.start()
        workers = set(children_of(gunicorn.pid))
        gunicorn.send_signal(signal.SIGHUP)
        assert wait_until(lambda: not workers & set(children_of(gunicorn.pid)), 20)
        assert wait_until(lambda: len(children_of(gunicorn.pid)) == 2, 20)
        stopping.set()
        for poller in pollers:
            poller.join(30)
        assert failures == []  # no poll failed while the workers were replaced
        assert list((tmp_path / "metrics").glob("*.db"))  # metrics summed across workers
        gunicorn.send_signal(signal.SIGTERM)
        assert gunicorn.wait(20) == 0
    finally:
        stopping.set()
        stop(gunicorn)
        log.close()
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line JSON
    messages = [r.get("message", "") for r in records]
    assert "Using worker: gthread" in messages
    assert any("Hang up" in m for m in messages), messages


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def unit_command(venv: Path) -> list[str]:
    """The service unit's ExecStart, with this venv where the unit expects /opt/zdm-monitor."""
    unit = (REPO / "config" / "systemd" / "zdm-monitor.service").read_text()
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    command = shlex.split(line.removeprefix("ExecStart=").replace("/opt/zdm-monitor", str(venv)))
    assert command[:2] == ["/usr/bin/env", str(venv / "bin" / "gunicorn")], command
    return command


def test_the_systemd_units_verify_as_shipped() -> None:
    """`systemd-analyze verify config/systemd/*.service` from the checkout, nothing installed."""
    assert UNITS, "no unit in config/systemd"
    verified = subprocess.run(
        ["systemd-analyze", "verify", *map(str, UNITS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == "", verified.stderr
