"""The zdm-dev command, the workshop's: its commands, the demo data and the development token."""

from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from psycopg2.extensions import connection

from zdm_devstack.cli import main
from zdm_devstack.stack import dev_secret

WORKSHOP_COMMANDS = ["cluster", "demo-agent", "generate", "load-demo", "serve", "token"]


def test_zdm_dev_holds_the_workshop_s_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    section = result.stdout.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in section.splitlines()] == WORKSHOP_COMMANDS


def test_load_demo_on_a_loaded_database(database_url: str, db: connection) -> None:
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(main, ["load-demo"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Jobs already present; demo data not loaded."


def test_load_demo_into_an_empty_database(database_url: str, db: connection) -> None:
    with db.cursor() as cur:
        cur.execute("TRUNCATE server, repository, backup, backup_info, backup_log")
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(main, ["load-demo"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Demo data loaded."
    with db.cursor() as cur:
        cur.execute("SELECT name FROM backup ORDER BY id")
        assert [r[0] for r in cur.fetchall()][:2] == ["daily-backup", "daily-backup-win"]


@pytest.mark.parametrize("command", [["token"], ["load-demo"], ["demo-agent"], ["generate"]])
def test_commands_refuse_a_blank_setting_by_name(command: list[str]) -> None:
    """An environment file's `NAME=` is refused as the service refuses it, not read as unset."""
    env = {"DATABASE_URL": " ", "ZDM_JWT_SECRET": None, "ZDM_DATA_DIR": "\t"}
    args = ["--jobs", "1", "--servers", "1", "--lines", "1"] if command == ["generate"] else []
    result = CliRunner(env=env).invoke(main, [*command, *args])
    assert result.exit_code == 2, result.output
    assert re.search(
        r"Error: [A-Z_]+ is set but empty: give it a value, or remove it", result.stderr
    )


def test_token_prefers_the_configured_secret(tmp_path: Path) -> None:
    dev_secret(tmp_path)
    secret = "s" * 40
    env = {"ZDM_JWT_SECRET": secret, "ZDM_DATA_DIR": str(tmp_path)}
    result = CliRunner(env=env).invoke(main, ["token", "--subject", "ops"])
    assert result.exit_code == 0, result.output
    assert "Signed with ZDM_JWT_SECRET." in result.stderr
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "ops"
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600


def test_token_uses_the_data_folder_s_development_secret(tmp_path: Path) -> None:
    """The secret a server made in the data folder signs the token; which one is said on stderr."""
    secret = dev_secret(tmp_path)  # as `zdm-dev serve` makes it on its first start
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


def test_token_refuses_where_the_service_verifies_a_public_key(tmp_path: Path) -> None:
    dev_secret(tmp_path)
    env = {
        "ZDM_JWT_SECRET": None,
        "ZDM_JWT_PUBLIC_KEY": "/etc/zdm/key.pem",
        "ZDM_DATA_DIR": str(tmp_path),
    }
    result = CliRunner(env=env).invoke(main, ["token"])
    assert result.exit_code == 1
    assert "cannot sign" in result.stderr
    assert result.stdout == ""
