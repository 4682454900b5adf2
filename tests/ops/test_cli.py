"""The zdm-monitor command: schema, demo data and tokens."""

from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from psycopg2.extensions import connection

from zdm_devstack.stack import dev_secret
from zdm_monitor.ops.cli import main


def test_init_db_and_load_demo_on_a_loaded_database(database_url: str, db: connection) -> None:
    runner = CliRunner(env={"DATABASE_URL": database_url})
    result = runner.invoke(main, ["init-db"])
    assert result.exit_code == 0, result.output
    assert "Schema applied." in result.output
    result = runner.invoke(main, ["load-demo"])
    assert result.exit_code == 0, result.output
    assert "demo data not loaded" in result.output


def test_load_demo_into_an_empty_database(database_url: str, db: connection) -> None:
    with db.cursor() as cur:
        cur.execute("TRUNCATE server, repository, backup, backup_info, backup_log")
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(main, ["load-demo"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Demo data loaded."
    with db.cursor() as cur:
        cur.execute("SELECT name FROM backup ORDER BY id")
        assert [r[0] for r in cur.fetchall()][:2] == ["daily-backup", "daily-backup-win"]


def test_commands_need_database_url() -> None:
    result = CliRunner(env={"DATABASE_URL": None}).invoke(main, ["init-db"])
    assert result.exit_code == 2
    assert "DATABASE_URL is not set" in result.output


@pytest.mark.parametrize("command", [["init-db"], ["token"], ["load-demo"], ["demo-agent"]])
def test_commands_refuse_a_blank_setting_by_name(command: list[str]) -> None:
    """An environment file's `NAME=` is refused as the service refuses it, not read as unset."""
    env = {"DATABASE_URL": " ", "ZDM_JWT_SECRET": None, "ZDM_DATA_DIR": "\t"}
    result = CliRunner(env=env).invoke(main, command)
    assert result.exit_code == 2, result.output
    assert re.search(
        r"Error: [A-Z_]+ is set but empty: give it a value, or remove it", result.stderr
    )


def test_token_uses_the_configured_secret() -> None:
    secret = "s" * 40
    result = CliRunner(env={"ZDM_JWT_SECRET": secret}).invoke(main, ["token", "--subject", "ops"])
    assert result.exit_code == 0, result.output
    assert "Signed with ZDM_JWT_SECRET." in result.stderr
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "ops"
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600


def test_token_uses_the_data_folder_s_development_secret(tmp_path: Path) -> None:
    """The secret a server made in the data folder signs the token; which one is said on stderr."""
    secret = dev_secret(tmp_path)  # as `zdm-monitor serve` makes it on its first start
    env = {"ZDM_JWT_SECRET": None, "ZDM_DATA_DIR": str(tmp_path)}
    first = CliRunner(env=env).invoke(main, ["token"])
    second = CliRunner(env=env).invoke(main, ["token", "--ttl", "60"])
    assert len(secret) == 64
    assert oct((tmp_path / "dev-jwt-secret").stat().st_mode & 0o777) == "0o600"
    for result in (first, second):
        assert result.exit_code == 0, result.output
        assert f"Signed with the development secret {tmp_path / 'dev-jwt-secret'}." in result.stderr
        assert jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "dashboard"
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(result.stdout.strip(), "x" * 64, algorithms=["HS256"])


def test_token_refuses_to_invent_a_secret_where_no_server_ran(tmp_path: Path) -> None:
    """Outside a data folder a server used, a new secret would sign tokens no server accepts."""
    result = CliRunner(env={"ZDM_JWT_SECRET": None, "ZDM_DATA_DIR": str(tmp_path)}).invoke(
        main, ["token"]
    )
    assert result.exit_code == 1
    assert f"no development secret at {tmp_path / 'dev-jwt-secret'}" in result.stderr
    assert "ZDM_JWT_SECRET" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "dev-jwt-secret").exists()


@pytest.mark.parametrize("ttl", ["0", "-60", "soon"])
def test_token_ttl_must_be_positive(ttl: str) -> None:
    result = CliRunner(env={"ZDM_JWT_SECRET": "s" * 40}).invoke(main, ["token", "--ttl", ttl])
    assert result.exit_code == 2
    assert "--ttl" in result.stderr
    assert result.stdout == ""


def test_token_refuses_where_the_service_verifies_a_public_key() -> None:
    result = CliRunner(
        env={"ZDM_JWT_SECRET": None, "ZDM_JWT_PUBLIC_KEY": "/etc/zdm/key.pem"}
    ).invoke(main, ["token"])
    assert result.exit_code == 1
    assert "cannot sign" in result.stderr


def test_nginx_config_fills_every_placeholder() -> None:
    result = CliRunner().invoke(
        main,
        [
            "nginx-config",
            "--listen",
            "8080",
            "--upstream",
            "unix:/run/zdm/g.sock",
            "--server-name",
            "monitor.example",
            "--log-dir",
            "/var/log/zdm",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "${ZDM_" not in result.output
    assert "server unix:/run/zdm/g.sock max_fails=3" in result.output
    assert "listen 8080 default_server;" in result.output
    assert "server_name monitor.example;" in result.output
    assert "access_log /var/log/zdm/access.log zdm_json;" in result.output
    # nginx's own variables are left alone.
    assert "$proxy_add_x_forwarded_for" in result.output


def test_nginx_config_lists_every_gunicorn_node() -> None:
    nodes = ["127.0.0.1:8001", "127.0.0.1:8002", "10.0.0.3:8001"]
    result = CliRunner().invoke(main, ["nginx-config", *(f"--upstream={n}" for n in nodes)])
    assert result.exit_code == 0, result.output
    servers = [line.split()[1] for line in result.output.splitlines() if "max_fails=" in line]
    assert servers == nodes
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in result.output
