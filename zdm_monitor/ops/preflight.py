"""zdm-monitor check: the checks of docs/deploying.md's Preflight, one result each; one that
needs what an earlier one could not give is not run, and every query only reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from importlib.resources import files
from typing import Any

import jwt
import psycopg2
from psycopg2.extensions import connection

from ..api.auth import TokenRejected, verify
from ..config import HMAC_ALGORITHMS, MIN_SECRET_BYTES, OBSOLETE, Settings, load_settings, token_key
from ..data.database import DEADLINE_GRACE_S, read_deadline_s
from ..data.deadlines import Deadline, DeadlineExceeded, Watchdog, connect_within
from ..data.pool import connect_kwargs
from ..data.replicas import CHECK_TIMEOUT_MS, Replica, Replicas
from ..data.repository import READ_GUARD, ZDM_TABLES
from ..data.schema import FUNCTIONS, RELEASE_FUNCTION, read_sql, release
from ..environment import ConfigError
from .report import FAIL, OK, SKIP, WARN, Result, describe, first_line, unreachable, why_rejected

# The read functions' pg_current_snapshot() and pg_snapshot_xmax() came with PostgreSQL 13.
MIN_SERVER_VERSION = 130000
INIT_DB = "run `zdm-monitor init-db` as the tables' owner"
ROLE_DOC = "docs/deploying.md, Database role"
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
# The key has a check of its own: the others run with this stand-in, so a bad key stops nothing.
KEY_SETTINGS = ("ZDM_JWT_SECRET", "ZDM_JWT_PUBLIC_KEY", "ZDM_JWT_ALGORITHMS")
STAND_IN_KEY = {"ZDM_JWT_SECRET": "0" * MIN_SECRET_BYTES}


class NotRun(Exception):
    """What the check needs did not come: an earlier check failed."""


def query(name: str) -> str:
    """One of the checks' queries, kept as SQL in ops/sql/."""
    return files("zdm_monitor.ops").joinpath("sql", name).read_text(encoding="utf-8")


class Preflight:
    """One run of the checks; the later ones use what the earlier ones found."""

    def __init__(self, env: Mapping[str, str], token: str | None, allow_writer: bool) -> None:
        self.env, self.token, self.allow_writer = env, token, allow_writer
        self.settings: Settings | None = None  # every setting, the key a stand-in
        self.full: Settings | None = None  # with the real key
        self.conn: connection | None = None
        self.role = ""  # the role DATABASE_URL connects as
        self.watchdog = Watchdog()
        self.results: list[Result] = []

    def run(self) -> list[Result]:
        """Every check, in order."""
        self.watchdog.start()
        try:
            self.attempt("settings", self.check_settings)
            self.attempt("key", self.check_key)
            if self.token is not None:
                self.attempt("token", partial(self.check_token, self.token))
            self.attempt("database", self.check_database)
            self.attempt("functions", self.check_functions)
            self.attempt("role", self.check_role)
            self.check_replicas()
        finally:
            self.watchdog.stop()
            if self.conn is not None:
                self.conn.close()
        return self.results

    def attempt(self, name: str, check: Callable[[], tuple[str, str]]) -> None:
        try:
            status, message = check()
        except NotRun as exc:
            status, message = SKIP, f"not run: {exc}"
        except ConfigError as exc:
            status, message = FAIL, " ".join(exc.problems) + " (docs/configuration.md)"
        except (psycopg2.Error, DeadlineExceeded) as exc:
            status, message = FAIL, "the database stopped answering: " + first_line(exc)
        except Exception as exc:  # a check that breaks is a failure in one line, not a traceback
            status, message = FAIL, f"the check itself failed ({type(exc).__name__})"
        self.results.append(Result(name, status, message))

    def check_settings(self) -> tuple[str, str]:
        others = {k: v for k, v in self.env.items() if k not in KEY_SETTINGS}
        self.settings = load_settings({**others, **STAND_IN_KEY})
        replicas = len(self.settings.database_replica_urls)
        message = f"they parse: DATABASE_URL {describe(self.settings.database_url)}, "
        message += f"{replicas} replica{'' if replicas == 1 else 's'}"
        ignored = [
            f"{name} is ignored: {why}" for name, why in OBSOLETE.items() if self.env.get(name)
        ]
        return (WARN, "; ".join([message, *ignored]) + ".") if ignored else (OK, message)

    def check_key(self) -> tuple[str, str]:
        key, algorithms = token_key(self.env)
        if self.settings is not None:
            self.full = replace(self.settings, jwt_key=key, jwt_algorithms=algorithms)
        names = ", ".join(algorithms)
        if algorithms[0] in HMAC_ALGORITHMS:
            size = len(key.encode())
            return OK, f"ZDM_JWT_SECRET, {size} bytes (at least {MIN_SECRET_BYTES}), for {names}"
        bits = getattr(jwt.get_algorithm_by_name(algorithms[0]).prepare_key(key), "key_size", "?")
        return OK, f"ZDM_JWT_PUBLIC_KEY, a {bits}-bit public key, for {names}"

    def check_token(self, token: str) -> tuple[str, str]:
        if self.full is None:
            raise NotRun("the settings and the key must be valid first")
        try:
            claims = verify(f"Bearer {token}", self.full)
        except TokenRejected as exc:
            return FAIL, f"{exc.description}: {why_rejected(exc.description, token, self.full)}"
        left = claims["exp"] - time.time()
        return OK, f"it verifies: sub {claims.get('sub')!r}, expires in {left / 3600:.1f} h"

    def check_database(self) -> tuple[str, str]:
        settings = self.need_settings()
        seconds = read_deadline_s(settings)
        where = describe(settings.database_url)
        started = time.monotonic()
        try:
            conn = connect_within(
                settings.database_url, connect_kwargs(settings), Deadline(seconds)
            )
            conn.autocommit = True
            self.conn = conn
            number, version, self.role = self.rows(query("version.sql"))[0]
        except (psycopg2.Error, DeadlineExceeded) as exc:
            self.conn = None
            within = f"the read deadline, {seconds:g} s (ZDM_DB_STATEMENT_TIMEOUT_MS + "
            within += f"{DEADLINE_GRACE_S:g} s)"
            then = "check DATABASE_URL, that PostgreSQL runs there and lets this host in"
            return FAIL, unreachable(where, exc, within, "DATABASE_URL", then + " (pg_hba.conf)")
        took = (time.monotonic() - started) * 1000
        if number < MIN_SERVER_VERSION:
            self.conn = None
            conn.close()
            return FAIL, (
                f"PostgreSQL {version} at {where}: the read functions need 13 or later"
                " (pg_current_snapshot): upgrade the server"
            )
        return OK, (
            f"PostgreSQL {version} (13 or later) at {where}, as {self.role}, answered in"
            f" {took:.0f} ms (read deadline {seconds:g} s)"
        )

    def check_functions(self) -> tuple[str, str]:
        self.need_database()
        ours = [RELEASE_FUNCTION, *FUNCTIONS]
        missing, denied, leftovers, triggers = self.rows(query("held.sql"), ours=ours)[0]
        shipped = release(read_sql())
        redo = [f"{name} is missing" for name in missing]  # what init-db puts right
        if RELEASE_FUNCTION in missing:
            redo[0] += " (init-db never ran here, or an older release's did)"
        elif RELEASE_FUNCTION not in denied:
            stamp = self.rows(f"SELECT {RELEASE_FUNCTION}()")[0][0]
            if stamp != shipped:
                redo.insert(
                    0,
                    f"the functions are another release's ({RELEASE_FUNCTION}()"
                    f" answers {stamp[:12]}, this release {shipped[:12]})",
                )
        redo += [f"{signature} is an older release's" for signature in leftovers]
        if triggers:
            redo.append(f"{len(triggers)} trigger(s) of an older release ({triggers[0]}, ...)")
        found = [f"{'; '.join(redo)}: {INIT_DB}"] if redo else []
        if denied:
            names = ", ".join(denied)
            found.append(
                f"{self.role} may not execute {names}: GRANT EXECUTE ON FUNCTION"
                f" {names} TO {self.role} ({ROLE_DOC})"
            )
        if found:
            return FAIL, "; ".join(found)
        return OK, (
            f"{', '.join(FUNCTIONS)}: this release's ({RELEASE_FUNCTION}() answers"
            f" {shipped[:12]}), executable by {self.role}; nothing of an older release"
        )

    def check_role(self) -> tuple[str, str]:
        self.need_database()
        tables, role = list(ZDM_TABLES), self.role
        row = self.rows(query("role.sql"), tables=tables, writes=list(WRITES))[0]
        superuser, missing, unreadable, writes, owned = row
        if missing:
            return FAIL, (
                f"{role} cannot see {', '.join(missing)} (missing, or no USAGE on the schema):"
                " does DATABASE_URL name ZDM's database?"
            )
        if unreadable:
            return FAIL, (
                f"{role} may not read {', '.join(unreadable)}: grant SELECT on ZDM's tables"
                f" ({ROLE_DOC})"
            )
        by_rights: dict[str, list[str]] = {}  # the write rights -> the tables they are on
        for table, rights in writes:
            by_rights.setdefault(rights, []).append(table)
        power = ["is a superuser"] if superuser else []
        power += [f"owns {', '.join(owned)}"] if owned else []
        power += [f"may {r} on {', '.join(t)}" for r, t in by_rights.items()]
        if not power:
            return OK, f"{role} reads ZDM's {len(tables)} tables and may write none of them"
        fix = (
            "connect as a role of its own with SELECT only"
            if superuser or owned
            else f"REVOKE {', '.join(WRITES)} ON {', '.join(tables)} FROM {role}"
        )
        message = f"{role} {'; '.join(power)}: the service only reads; {fix} ({ROLE_DOC})"
        if self.allow_writer:
            return WARN, message + " (allowed by --allow-writer)"
        return FAIL, message

    def check_replicas(self) -> None:
        if self.settings is None or not self.settings.database_replica_urls:
            self.attempt("replicas", self.no_replicas)
            return
        for replica in Replicas(self.settings, self.watchdog).replicas:
            self.attempt(replica.name, partial(self.check_replica, replica))

    def no_replicas(self) -> tuple[str, str]:
        self.need_settings()
        return OK, "none (DATABASE_REPLICA_URLS is empty): the primary takes every read"

    def check_replica(self, replica: Replica) -> tuple[str, str]:
        where = describe(replica.pool.url)
        limit = replica.settings.replica_max_lag_s
        try:
            lag = replica.measure()
        except (psycopg2.Error, DeadlineExceeded) as exc:
            then = "reads skip it; check that it runs and lets this host in"
            within = f"{CHECK_TIMEOUT_MS} ms, as the service's replica monitor asks"
            return FAIL, unreachable(where, exc, within, "DATABASE_REPLICA_URLS", then)
        finally:
            replica.close_monitor_connection()
        if replica.judge(lag).status == OK:
            return OK, f"{where} is {lag:.1f} s behind (ZDM_REPLICA_MAX_LAG_S {limit:g})"
        behind = "is behind by an unknown time" if lag is None else f"is {lag:.1f} s behind"
        return FAIL, (
            f"{where} {behind}, more than ZDM_REPLICA_MAX_LAG_S {limit:g}: reads skip it until"
            " it catches up; check its replication (pg_stat_wal_receiver on it)"
        )

    def need_settings(self) -> Settings:
        if self.settings is None:
            raise NotRun("the settings must parse first")
        return self.settings

    def need_database(self) -> None:
        self.need_settings()
        if self.conn is None:
            raise NotRun("the database must answer first")

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """One read-only query on the primary, within the service's read deadline."""
        assert self.conn is not None and self.settings is not None
        deadline = Deadline(read_deadline_s(self.settings))
        params["timeout_ms"] = self.settings.db_statement_timeout_ms
        try:
            with self.watchdog.watch(self.conn, deadline), self.conn.cursor() as cur:
                cur.execute(READ_GUARD + sql, params)
                return cur.fetchall()
        except psycopg2.Error as exc:
            if deadline.expired:
                raise DeadlineExceeded from exc
            raise
