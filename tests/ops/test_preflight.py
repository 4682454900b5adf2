"""zdm-monitor check: every check passes as the SELECT-only role, and each fault is named.

The faults that change a database (grants, dropped functions, another release's stamp, an older
release's triggers) are made in a scratch database of the test server, so the shared test
database is never touched.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import psycopg2
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg2.extensions import make_dsn
from support.api import SECRET, make_token
from support.database import READER, scratch_database
from support.launcher import OPERATOR
from support.pgwire import CountingProxy
from support.processes import clean_env, free_port

from zdm_devstack.stack import create_reader
from zdm_monitor.data.schema import apply_schema, read_sql, release
from zdm_monitor.ops.cli import main

SCRATCH = "zdm_check_scratch"
SHIPPED = release(read_sql())
RELEASE_0_1_0 = Path(__file__).parents[1] / "support" / "release-0.1.0.sql"
PASSWORD = "pw-that-must-not-show"
# Every setting the check reads that the test process might carry: unset unless given.
UNSET = {
    name: None
    for name in (
        "DATABASE_REPLICA_URLS",
        "ZDM_JWT_PUBLIC_KEY",
        "ZDM_JWT_ALGORITHMS",
        "ZDM_JWT_AUDIENCE",
        "ZDM_JWT_ISSUER",
        "ZDM_REPLICA_MAX_LAG_S",
        "ZDM_DB_STATEMENT_TIMEOUT_MS",
        "DATABASE_LISTEN_URL",
    )
}


@dataclass
class Checked:
    exit_code: int
    output: str
    lines: dict[str, str]  # check name -> its line

    def status(self, name: str) -> str:
        return self.lines[name].split(" ", 1)[0]


def check(database: str, *args: str, **env: str | None) -> Checked:
    result = CliRunner(
        env={**UNSET, "DATABASE_URL": database, "ZDM_JWT_SECRET": SECRET, **env}
    ).invoke(main, ["check", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    named = {line[len("FAIL ") :].split(":", 1)[0]: line for line in lines[:-1]}
    return Checked(result.exit_code, result.output, named)


@dataclass
class Scratch:
    owner: str  # the tables' owner (the superuser)
    reader: str  # the SELECT-only role

    def run(self, *statements: str) -> None:
        with closing(psycopg2.connect(self.owner)) as conn, conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)


@pytest.fixture(scope="module")
def scratch(database_url: str) -> Iterator[Scratch]:
    """A database of its own on the test server, with the schema and the reader's grants."""
    with scratch_database(database_url, SCRATCH) as owner:
        with closing(psycopg2.connect(owner)) as conn:
            apply_schema(conn)
        create_reader(owner, READER, READER)
        yield Scratch(owner, make_dsn(owner, user=READER, password=READER))


@pytest.fixture
def reset(scratch: Scratch) -> Iterator[Scratch]:
    """The scratch database, its schema and grants as init-db and the docs leave them after."""
    yield scratch
    with closing(psycopg2.connect(scratch.owner)) as conn:
        apply_schema(conn)
    scratch.run(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON backup_info FROM {READER}")


def test_the_select_only_role_passes_every_check(reader_url: str, proxy: CountingProxy) -> None:
    token = make_token()
    checked = check(reader_url, "--token", token, DATABASE_REPLICA_URLS=proxy.url)
    assert checked.exit_code == 0, checked.output
    assert list(checked.lines) == [
        "settings",
        "key",
        "token",
        "database",
        "functions",
        "role",
        "replica1",
    ]
    assert {checked.status(name) for name in checked.lines} == {"ok"}, checked.output
    assert "zdm-monitor check: all 7 passed." in checked.output
    assert f"as {READER}, answered in" in checked.lines["database"]
    assert checked.lines["functions"] == (
        "ok   functions: zdm_monitor_job_snapshot, zdm_monitor_server_snapshot,"
        f" zdm_monitor_written: this release's (zdm_monitor_release() answers {SHIPPED[:12]}),"
        f" executable by {READER}; nothing of an older release"
    )
    assert "may write none of them" in checked.lines["role"]
    assert "is 0.0 s behind" in checked.lines["replica1"]
    assert "sub 'tester'" in checked.lines["token"]
    for secret in (SECRET, token, READER + ":" + READER):
        assert secret not in checked.output


def test_the_token_can_come_from_stdin(reader_url: str) -> None:
    """Out of the shell's history and the process list."""
    runner = CliRunner(env={**UNSET, "DATABASE_URL": reader_url, "ZDM_JWT_SECRET": SECRET})
    good = runner.invoke(main, ["check", "--token", "-"], input=make_token() + "\n")
    assert good.exit_code == 0, good.output
    assert "ok   token: it verifies: sub 'tester'" in good.output
    other = jwt.encode(other_claims(), "another-key-that-is-long-enough-too!", "HS256")
    bad = runner.invoke(main, ["check", "--token", "-"], input=other + "\n")
    assert bad.exit_code == 1 and "FAIL token: bad signature" in bad.output


def test_every_query_is_a_bounded_read_only_transaction(proxy: CountingProxy) -> None:
    checked = check(proxy.url)
    assert checked.exit_code == 0, checked.output
    queries = proxy.take()
    assert len(queries) == 4  # the version, what the database holds, the stamp, the role
    for query in queries:
        assert query.startswith("SET LOCAL statement_timeout = 5000; SET TRANSACTION READ ONLY;"), (
            query
        )


def test_a_role_that_may_update_backup_info_fails_unless_writers_are_allowed(
    reset: Scratch,
) -> None:
    reset.run(f"GRANT UPDATE ON backup_info TO {READER}")
    checked = check(reset.reader)
    assert checked.exit_code == 1
    role = checked.lines["role"]
    assert role == (
        f"FAIL role: {READER} may UPDATE on backup_info: the service only reads; REVOKE INSERT,"
        f" UPDATE, DELETE, TRUNCATE ON server, repository, backup, backup_info, backup_log FROM"
        f" {READER} (docs/deploying.md, Database role)"
    )
    assert "zdm-monitor check: 1 of 6 failed." in checked.output

    allowed = check(reset.reader, "--allow-writer")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.lines["role"].startswith(f"WARN role: {READER} may UPDATE on backup_info")
    assert "(allowed by --allow-writer)" in allowed.lines["role"]
    assert "all 6 passed (1 with a warning)" in allowed.output


def test_the_tables_owner_and_a_superuser_are_named(scratch: Scratch) -> None:
    role = check(scratch.owner).lines["role"]
    tables = "server, repository, backup, backup_info, backup_log"
    assert role == (
        f"FAIL role: postgres is a superuser; owns {tables}; may INSERT, UPDATE, DELETE, TRUNCATE"
        f" on {tables}: the service only reads; connect as a role of its own with SELECT only"
        " (docs/deploying.md, Database role)"
    )


def test_a_role_that_owns_one_table_is_named(scratch: Scratch) -> None:
    owner = "zdm_check_owner"
    scratch.run(
        f"CREATE ROLE {owner} LOGIN PASSWORD '{owner}'",
        f"GRANT SELECT ON server, repository, backup, backup_info TO {owner}",
        f"ALTER TABLE backup_log OWNER TO {owner}",
    )
    try:
        role = check(make_dsn(scratch.owner, user=owner, password=owner)).lines["role"]
    finally:
        scratch.run(
            "ALTER TABLE backup_log OWNER TO postgres",
            f"DROP OWNED BY {owner}",
            f"DROP ROLE {owner}",
        )
    assert role == (
        f"FAIL role: {owner} owns backup_log; may INSERT, UPDATE, DELETE, TRUNCATE on backup_log:"
        " the service only reads; connect as a role of its own with SELECT only"
        " (docs/deploying.md, Database role)"
    )


def test_a_database_without_the_read_functions_fails(reset: Scratch) -> None:
    reset.run(
        "DROP FUNCTION zdm_monitor_job_snapshot, zdm_monitor_server_snapshot, zdm_monitor_written"
    )
    checked = check(reset.reader)
    assert checked.exit_code == 1
    assert checked.lines["functions"] == (
        "FAIL functions: zdm_monitor_job_snapshot is missing; zdm_monitor_server_snapshot is"
        " missing; zdm_monitor_written is missing: run `zdm-monitor init-db` as the tables' owner"
    )
    assert checked.status("role") == "ok"  # the other checks still run


def test_the_change_triggers_of_release_0_1_0_fail_until_init_db(reset: Scratch) -> None:
    reset.run(RELEASE_0_1_0.read_text())
    checked = check(reset.reader)
    assert checked.exit_code == 1
    functions = checked.lines["functions"]
    assert functions.startswith("FAIL functions: ")
    for leftover in (
        "zdm_monitor_notify(text) is an older release's",
        "zdm_monitor_backup_changed() is an older release's",
        "zdm_monitor_job_rows_changed() is an older release's",
        "zdm_monitor_everything_changed() is an older release's",
        "14 trigger(s) of an older release (zdm_monitor_changes_on_backup_delete on backup, ...)",
    ):
        assert leftover in functions, functions
    assert functions.endswith(": run `zdm-monitor init-db` as the tables' owner")

    with closing(psycopg2.connect(reset.owner)) as conn:  # the fix it names
        apply_schema(conn)
    assert check(reset.reader).exit_code == 0


def test_the_functions_of_a_release_before_the_stamp_fail_until_init_db(reset: Scratch) -> None:
    """0.1.0 with the log cursor: a read function without the version column, and no stamp."""
    with closing(psycopg2.connect(reset.owner)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc"
            " WHERE proname = 'zdm_monitor_job_snapshot'"
        )
        (arguments,) = cur.fetchone()  # type: ignore[misc]
        cur.execute(f"DROP FUNCTION zdm_monitor_job_snapshot({arguments}), zdm_monitor_release()")
        cur.execute(
            f"CREATE FUNCTION zdm_monitor_job_snapshot({arguments}) RETURNS TABLE (job_id bigint)"
            " LANGUAGE sql AS 'SELECT 1::bigint WHERE false'"
        )
    assert check(reset.reader).lines["functions"] == (
        "FAIL functions: zdm_monitor_release is missing (init-db never ran here, or an older"
        " release's did): run `zdm-monitor init-db` as the tables' owner"
    )
    with closing(psycopg2.connect(reset.owner)) as conn:  # the fix it names
        apply_schema(conn)
    assert check(reset.reader).exit_code == 0


def test_the_functions_of_another_release_fail(reset: Scratch) -> None:
    """The stamp another release's init-db leaves: the digest of other SQL files."""
    other = release([b"-- another release"])
    reset.run(
        "CREATE OR REPLACE FUNCTION zdm_monitor_release() RETURNS text LANGUAGE sql IMMUTABLE"
        f" AS $$SELECT '{other}'::text$$"
    )
    assert check(reset.reader).lines["functions"] == (
        "FAIL functions: the functions are another release's (zdm_monitor_release() answers"
        f" {other[:12]}, this release {SHIPPED[:12]}): run `zdm-monitor init-db` as the tables'"
        " owner"
    )


def test_a_function_the_role_may_not_execute_names_the_grant(reset: Scratch) -> None:
    """Where new functions are not executable by PUBLIC: the stamp init-db adds to a database
    of an older release is not the role's until granted."""
    reset.run(
        "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
        "DROP FUNCTION zdm_monitor_release()",
    )
    try:
        with closing(psycopg2.connect(reset.owner)) as conn:
            apply_schema(conn)
        checked = check(reset.reader)
        assert checked.lines["functions"] == (
            f"FAIL functions: {READER} may not execute zdm_monitor_release: GRANT EXECUTE ON"
            f" FUNCTION zdm_monitor_release TO {READER} (docs/deploying.md, Database role)"
        )
        assert checked.status("role") == "ok"
        reset.run(f"GRANT EXECUTE ON FUNCTION zdm_monitor_release TO {READER}")  # what it says
        assert check(reset.reader).exit_code == 0
    finally:
        reset.run(
            "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC",
            "GRANT EXECUTE ON FUNCTION zdm_monitor_release TO PUBLIC",
        )


def test_an_unreachable_replica_fails(reader_url: str) -> None:
    replica = f"postgresql://{READER}:{PASSWORD}@127.0.0.1:{free_port()}/zdm"
    checked = check(reader_url, DATABASE_REPLICA_URLS=replica)
    assert checked.exit_code == 1
    line = checked.lines["replica1"]
    assert line.startswith(f"FAIL replica1: {READER}@127.0.0.1:"), line
    assert "Connection refused: reads skip it; check that it runs" in line
    assert PASSWORD not in checked.output


def test_a_16_byte_secret_fails_and_the_database_is_still_checked(reader_url: str) -> None:
    checked = check(reader_url, ZDM_JWT_SECRET="s" * 16)
    assert checked.exit_code == 1
    assert checked.lines["key"].startswith(
        "FAIL key: ZDM_JWT_SECRET must be at least 32 bytes long."
    )
    assert [checked.status(n) for n in ("settings", "database", "functions", "role")] == ["ok"] * 4
    assert "s" * 16 not in checked.output


def other_claims(**claims: Any) -> dict[str, Any]:
    return {"sub": "tester", "exp": int(time.time()) + 3600, **claims}


@pytest.mark.parametrize(
    ("token", "env", "reason"),
    [
        (
            jwt.encode(other_claims(), "another-key-that-is-long-enough-too!", "HS256"),
            {},
            "bad signature: it was signed with another key than ZDM_JWT_SECRET",
        ),
        (
            make_token(exp=int(time.time()) - 3600),
            {},
            "token expired: its exp is ",
        ),
        (
            make_token(aud="another-service"),
            {"ZDM_JWT_AUDIENCE": "zdm-monitor"},
            "wrong audience: its aud is 'another-service', ZDM_JWT_AUDIENCE 'zdm-monitor'",
        ),
        (
            make_token("k" * 64, algorithm="HS512"),
            {},
            "algorithm not allowed: it is signed with HS512; ZDM_JWT_ALGORITHMS allows HS256",
        ),
        ("not-a-token", {}, "malformed token: it is not a JWT"),
    ],
    ids=["other-key", "expired", "audience", "algorithm", "malformed"],
)
def test_a_token_that_does_not_verify_says_why(
    reader_url: str, token: str, env: dict[str, str], reason: str
) -> None:
    checked = check(reader_url, "--token", token, **env)
    assert checked.exit_code == 1
    assert checked.lines["token"].startswith(f"FAIL token: {reason}"), checked.lines["token"]
    assert token not in checked.output
    assert [line for line in checked.lines.values() if line.startswith("FAIL")] == [
        checked.lines["token"]
    ]


def test_a_public_key_and_a_token_it_verifies(reader_url: str) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode(other_claims(), private, "RS256")
    checked = check(reader_url, "--token", token, ZDM_JWT_SECRET=None, ZDM_JWT_PUBLIC_KEY=pem)
    assert checked.exit_code == 0, checked.output
    assert checked.lines["key"] == "ok   key: ZDM_JWT_PUBLIC_KEY, a 2048-bit public key, for RS256"
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    wrong = check(reader_url, ZDM_JWT_SECRET=None, ZDM_JWT_PUBLIC_KEY=private_pem)
    assert wrong.exit_code == 1
    assert wrong.lines["key"].startswith("FAIL key: ZDM_JWT_PUBLIC_KEY is not a public key usable")
    assert "PRIVATE KEY" not in wrong.output


def untimed(line: str) -> str:
    return re.sub(r"answered in \d+ ms", "answered in N ms", line)


def test_json_says_the_same_as_the_lines(reader_url: str) -> None:
    lines = check(reader_url, ZDM_JWT_SECRET="s" * 16)
    result = CliRunner(
        env={**UNSET, "DATABASE_URL": reader_url, "ZDM_JWT_SECRET": "s" * 16}
    ).invoke(main, ["check", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)  # one object, nothing else on stdout
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]] == list(lines.lines)
    for entry in report["checks"]:
        tag = {"ok": "ok  ", "fail": "FAIL"}[entry["status"]]
        line = f"{tag} {entry['name']}: {entry['message']}"
        assert untimed(lines.lines[entry["name"]]) == untimed(line)
    passing = CliRunner(env={**UNSET, "DATABASE_URL": reader_url, "ZDM_JWT_SECRET": SECRET})
    assert json.loads(passing.invoke(main, ["check", "--json"]).output)["ok"] is True


def test_a_database_that_never_answers_fails_at_the_read_deadline(
    reader_url: str, proxy: CountingProxy
) -> None:
    proxy.silent.set()
    started = time.monotonic()
    try:
        checked = check(proxy.url, ZDM_DB_STATEMENT_TIMEOUT_MS="300")
    finally:
        proxy.silent.clear()
    seconds = time.monotonic() - started
    assert 1.3 <= seconds < 3, seconds  # 300 ms + the grace second, not libpq's 3 s
    assert checked.exit_code == 1
    assert "did not answer within the read deadline, 1.3 s" in checked.lines["database"]
    assert checked.lines["functions"] == "skip functions: not run: the database must answer first"


@pytest.mark.slow
def test_a_database_that_freezes_after_connecting_fails_each_check_at_its_deadline(
    proxy: CountingProxy,
) -> None:
    """The server answers the connect and the version, then nothing: a real process, each
    later check cut off at the read deadline by the watchdog, never waiting for ever."""
    proxy.silent_from = 2  # the query after the version's
    started = time.monotonic()
    try:
        ran = subprocess.run(
            [str(OPERATOR), "check"],
            env=clean_env(
                DATABASE_URL=proxy.url, ZDM_JWT_SECRET=SECRET, ZDM_DB_STATEMENT_TIMEOUT_MS="300"
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        proxy.silent.clear()
    seconds = time.monotonic() - started
    lines = {line.split(":", 1)[0]: line for line in ran.stdout.splitlines()[:-1]}
    assert ran.returncode == 1, ran.stdout
    assert lines["ok   database"].startswith("ok   database: PostgreSQL")
    assert lines["FAIL functions"].startswith("FAIL functions: the database stopped answering")
    assert seconds < 10, seconds  # two reads cut off at 1.3 s each, not a wait for ever


@pytest.mark.slow
def test_nothing_set_says_what_is_missing_and_runs_nothing_else() -> None:
    """A real process, as an operator runs it: one line each, no traceback, exit 1."""
    ran = subprocess.run(
        [str(OPERATOR), "check"],
        env=clean_env(DATABASE_URL=f"postgresql://zdm:{PASSWORD}@127.0.0.1:{free_port()}/zdm"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1
    assert ran.stderr == ""
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("ok   settings: they parse: DATABASE_URL zdm@127.0.0.1:")
    assert lines[1].startswith("FAIL key: No token key: set ZDM_JWT_SECRET")
    assert lines[2].startswith("FAIL database: zdm@127.0.0.1:")
    assert "Connection refused" in lines[2]
    assert lines[3:6] == [
        "skip functions: not run: the database must answer first",
        "skip role: not run: the database must answer first",
        "ok   replicas: none (DATABASE_REPLICA_URLS is empty): the primary takes every read",
    ]
    assert lines[6] == "zdm-monitor check: 2 of 6 failed, 2 not run."
    assert PASSWORD not in ran.stdout

    unset = subprocess.run(
        [str(OPERATOR), "check", "--json"], env=clean_env(), capture_output=True, text=True
    )
    report = json.loads(unset.stdout)
    assert unset.returncode == 1 and report["ok"] is False
    assert [c["status"] for c in report["checks"]] == ["fail", "fail"] + ["skip"] * 4
    assert report["checks"][0]["message"].startswith("DATABASE_URL is not set")
