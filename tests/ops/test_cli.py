"""The zdm-monitor command, the operator's: its commands, schema, tokens, the nginx site."""

from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from psycopg2.extensions import connection

from zdm_devstack.stack import dev_secret
from zdm_monitor.ops.cli import main

OPERATOR_COMMANDS = ["check", "init-db", "nginx-config", "token"]


def listed_commands(help_text: str) -> list[str]:
    """The command names of a click group's --help."""
    section = help_text.split("Commands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ")]


def test_zdm_monitor_holds_the_operator_s_commands_only() -> None:
    """The workshop, installed beside it here, adds nothing: it has a command of its own."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert listed_commands(result.stdout) == OPERATOR_COMMANDS
    for workshop in ("serve", "cluster", "generate", "load-demo", "demo-agent"):
        refused = CliRunner().invoke(main, [workshop])
        assert refused.exit_code == 2
        assert f"No such command '{workshop}'" in refused.stderr


def test_init_db_on_a_loaded_database_keeps_its_data(database_url: str, db: connection) -> None:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM backup")
        (before,) = cur.fetchone()
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(main, ["init-db"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Schema applied."
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM backup")
        assert cur.fetchone() == (before,)


def test_commands_need_database_url() -> None:
    result = CliRunner(env={"DATABASE_URL": None}).invoke(main, ["init-db"])
    assert result.exit_code == 2
    assert "DATABASE_URL is not set" in result.output


@pytest.mark.parametrize("command", [["init-db"], ["token"]])
def test_commands_refuse_a_blank_setting_by_name(command: list[str]) -> None:
    """An environment file's `NAME=` is refused as the service refuses it, not read as unset."""
    env = {"DATABASE_URL": " ", "ZDM_JWT_SECRET": "\t"}
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


def test_token_signs_with_the_configured_secret_only(tmp_path: Path) -> None:
    """A data folder's development secret is the workshop's (zdm-dev token), never the
    operator's: without ZDM_JWT_SECRET this token refuses."""
    dev_secret(tmp_path)  # as `zdm-dev serve` makes it on its first start
    result = CliRunner(env={"ZDM_JWT_SECRET": None, "ZDM_DATA_DIR": str(tmp_path)}).invoke(
        main, ["token"]
    )
    assert result.exit_code == 1
    assert "ZDM_JWT_SECRET is not set" in result.stderr
    assert result.stdout == ""


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
