"""The environment file reads the same in systemd and in a shell; check --env-file reads it so."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg2.extensions import parse_dsn
from support.database import READER

from zdm_monitor.ops.cli import main
from zdm_monitor.ops.envfile import read_env_file

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "systemd" / "zdm-monitor.env"
UNQUOTED_URL = "DATABASE_URL=postgresql://zdm@db.example/zdm?sslmode=require&port=5432\n"


def shell_reading(path: Path, names: list[str]) -> dict[str, str | None]:
    """What `set -a; . FILE` exports, as the docs' own steps read the file."""
    script = 'set -a; . "$1"; for n in "$@"; do printenv "$n" || echo "<unset>"; done'
    shell = subprocess.run(
        ["sh", "-c", script, "sh", str(path), *names],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
    )
    # the first argument is the file itself, printed as a name that is not set
    values = shell.stdout.splitlines()[1:]
    return {n: None if v == "<unset>" else v for n, v in zip(names, values, strict=True)}


def test_the_shipped_file_reads_the_same_in_systemd_and_in_a_shell() -> None:
    read = read_env_file(SHIPPED.read_text())
    assert read.disagreements == []
    assert "&" in read.variables["DATABASE_URL"]  # the case a bare value gets wrong
    assert set(read.variables) >= {"DATABASE_URL", "ZDM_JWT_SECRET", "GUNICORN_BIND"}
    assert shell_reading(SHIPPED, list(read.variables)) == read.variables


def test_an_unquoted_ampersand_is_where_they_part_and_it_is_named(tmp_path: Path) -> None:
    path = tmp_path / "zdm-monitor.env"
    path.write_text("# settings\n" + UNQUOTED_URL)
    read = read_env_file(path.read_text())
    url = "postgresql://zdm@db.example/zdm?sslmode=require&port=5432"
    assert read.variables == {"DATABASE_URL": url}
    # the shell runs the assignment before & in the background: it sets nothing
    assert shell_reading(path, ["DATABASE_URL"]) == {"DATABASE_URL": None}
    assert read.disagreements == [
        "line 2: a shell (set -a; . FILE) reads DATABASE_URL otherwise than systemd: write "
        "NAME='value', with no blanks around =."
    ]


@pytest.mark.parametrize(
    ("text", "variables", "same_in_a_shell"),
    [
        ("A='x y'\n", {"A": "x y"}, True),
        ('A="x \\"y\\" \\$z"\n', {"A": 'x "y" $z'}, False),
        ('A="x\\ny"\n', {"A": "x\\ny"}, False),  # other escapes are kept, backslash and all
        ("A=x y  \n", {"A": "x y"}, False),  # trailing blanks of a bare value go
        ("A='x' y z \n", {"A": "xy z"}, False),  # after a closing quote the value goes on
        ("A=x 'y'\n", {"A": "x 'y'"}, False),  # in a bare value quotes are characters
        ("A=x # not a comment\n", {"A": "x # not a comment"}, False),
        ("A=x\\\n  y\n", {"A": "x  y"}, False),  # a backslash-newline continues the line
        ("A='one\ntwo'\nB=3\n", {"A": "one\ntwo", "B": "3"}, True),
        ("  # comment\n; comment\nno equals sign\nA = x\n", {"A": "x"}, False),
        ("A=\nB=''\n", {"A": "", "B": ""}, True),
        ("A=1\r\nB=2", {"A": "1", "B": "2"}, True),
        ("A=~/x\nB=$HOME\n", {"A": "~/x", "B": "$HOME"}, False),
        # the shell's way to quote a quote: systemd's value goes bare after the backslash
        ("A='it'\\''s'\n", {"A": "it''s'"}, False),
        ("A=a#b\nB=x=y:z\n", {"A": "a#b", "B": "x=y:z"}, True),
    ],
)
def test_values_are_read_as_systemd_reads_them(
    text: str, variables: dict[str, str], same_in_a_shell: bool
) -> None:
    """systemd.exec(5), EnvironmentFile=; the shell's side is checked on real files above."""
    read = read_env_file(text)
    assert read.variables == variables
    assert (read.disagreements == []) is same_in_a_shell, read.disagreements


def shipped_with(database_url: str) -> str:
    """The shipped file as an operator fills it in: its DATABASE_URL line replaced."""
    lines = SHIPPED.read_text().splitlines(keepends=True)
    return "".join(database_url if line.startswith("DATABASE_URL=") else line for line in lines)


def test_check_reads_the_shipped_file_as_the_unit_will(tmp_path: Path, database_url: str) -> None:
    """A quoted URL with & passes every check; no DATABASE_URL in check's own environment."""
    where = parse_dsn(database_url)
    url = (
        f"postgresql://{READER}:{READER}@/{where['dbname']}"
        f"?host={where['host']}&port={where.get('port', 5432)}&application_name=zdm-check"
    )
    path = tmp_path / "zdm-monitor.env"
    path.write_text(shipped_with(f"DATABASE_URL='{url}'\n"))
    result = CliRunner(env={"DATABASE_URL": None, "ZDM_JWT_SECRET": None}).invoke(
        main, ["check", "--env-file", str(path)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"ok   env-file: {path}: 5 variables, as systemd reads them"
    assert lines[1].startswith(f"ok   settings: they parse: DATABASE_URL {READER}@")
    assert "DATABASE_URL is not set" not in result.output
    assert lines[-1].startswith("zdm-monitor check: all ")


def test_check_names_a_line_a_shell_would_split(tmp_path: Path) -> None:
    path = tmp_path / "zdm-monitor.env"
    path.write_text(shipped_with(UNQUOTED_URL))
    line = (
        SHIPPED.read_text()
        .splitlines()
        .index(next(x for x in SHIPPED.read_text().splitlines() if x.startswith("DATABASE_URL=")))
    )
    result = CliRunner(env={"DATABASE_URL": None}).invoke(main, ["check", "--env-file", str(path)])
    assert (
        f"WARN env-file: line {line + 1}: a shell (set -a; . FILE) reads DATABASE_URL otherwise"
        in result.output
    )
    # systemd's reading is what is checked: the whole URL, & and all
    assert "settings: they parse: DATABASE_URL zdm@db.example:5432/zdm" in result.output


def test_check_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", "--env-file", str(tmp_path / "missing.env")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
