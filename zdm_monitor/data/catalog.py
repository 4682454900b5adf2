"""What this release installs in ZDM's database, and what a database holds of it.

The signatures come from what repository.py calls, typed as the SQL files that init-db runs
declare them, so they cannot drift from either; whatever else a database holds under the
service's name is an older release's (this release creates no trigger at all).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .repository import ON_REPLICA, READ_FUNCTIONS, argument_names, selected
from .schema import SCHEMA_FILES, read_sql

FUNCTION = re.compile(
    r"CREATE\s+OR\s+REPLACE\s+FUNCTION\s+(?P<name>\w+)\s*\((?P<arguments>[^()]*)\)\s*RETURNS\s+"
    r"(?:TABLE\s*\((?P<columns>[^()]*)\)|(?P<type>\w+))",
    re.IGNORECASE,
)
TABLE = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)


# An entry of a function's signature: (mode, name, type); mode i: argument, t: result
# column, r: the result of a function that returns no table.
Entry = tuple[str, str, str | None]


def shipped_functions() -> dict[str, set[Entry]]:
    """The functions init-db creates, as its SQL files declare them."""
    shipped: dict[str, set[Entry]] = {}
    for name in SCHEMA_FILES:
        text = re.sub(r"--[^\n]*", "", read_sql(name))
        for match in FUNCTION.finditer(text):
            entries: set[Entry] = {("i", *pair) for pair in pairs(match["arguments"])}
            entries |= {("t", *pair) for pair in pairs(match["columns"] or "")}
            if match["type"]:
                entries.add(("r", "", match["type"]))
            shipped[match["name"]] = entries
    return shipped


def pairs(declarations: str) -> list[tuple[str, str]]:
    """'p_a bigint, p_b text' -> [('p_a', 'bigint'), ('p_b', 'text')]."""
    split = (d.split(None, 1) for d in declarations.split(",") if d.strip())
    return [(name, kind.strip()) for name, kind in split]


def expected_functions() -> dict[str, set[Entry]]:
    """The shipped functions; for those the service calls, what repository.py calls them with,
    typed as the SQL files declare it."""
    expected = shipped_functions()
    for function, (read, *records) in READ_FUNCTIONS.items():
        declared = {(mode, name): kind for mode, name, kind in expected.get(function, ())}
        wanted = [("i", f"p_{name}") for name in argument_names(read)]
        wanted += [("t", name) for name in selected(*records) if name != ON_REPLICA]
        expected[function] = {(mode, name, declared.get((mode, name))) for mode, name in wanted}
    return expected


def zdm_tables() -> list[str]:
    """ZDM's tables, as schema.sql names them."""
    return TABLE.findall(read_sql("schema.sql"))


INSTALLED = """
SELECT p.proname, p.oid::regprocedure::text, array(
    SELECT coalesce(a.mode, 'i') || ' ' || coalesce(a.name, '') || ' ' || format_type(a.type, NULL)
    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes::text[],
                p.proargnames) AS a(type, mode, name)
    WHERE a.type IS NOT NULL
) || CASE WHEN p.proretset AND p.prorettype = 'record'::regtype THEN '{}'::text[]
          ELSE array['r  ' || format_type(p.prorettype, NULL)] END
FROM pg_proc p
WHERE p.proname LIKE 'zdm\\_monitor\\_%%' AND pg_function_is_visible(p.oid)
"""
TYPES = "SELECT t, format_type(to_regtype(t), NULL) FROM unnest(%(types)s::text[]) AS t"
TRIGGERS = """
SELECT t.tgname || ' on ' || t.tgrelid::regclass::text FROM pg_trigger t
WHERE NOT t.tgisinternal AND t.tgname LIKE 'zdm\\_monitor\\_%%' ORDER BY 1
"""


def problems(rows: Callable[..., list[Any]]) -> list[str]:
    """What keeps the database from being this release's, asked through rows(query, **params)."""
    expected = expected_functions()
    types = sorted({kind for entries in expected.values() for _, _, kind in entries if kind})
    canonical = dict(rows(TYPES, types=types))
    installed: dict[str, dict[str, set[str]]] = {}
    for name, signature, entries in rows(INSTALLED):
        installed.setdefault(name, {})[signature] = set(entries)
    found = []
    for name, entries in expected.items():
        want = {f"{mode} {arg} {canonical.get(kind or '')}" for mode, arg, kind in entries}
        overloads = installed.pop(name, {})
        if not overloads:
            found.append(f"{name} is missing")
        for signature, have in overloads.items():
            if have != want:
                found.append(f"{signature} is not this release's{old_columns(have)}")
    found += [f"{s} is an older release's" for left in installed.values() for s in left]
    triggers = [row[0] for row in rows(TRIGGERS)]
    if triggers:
        found.append(f"{len(triggers)} trigger(s) of an older release ({triggers[0]}, ...)")
    return found


def old_columns(entries: set[str]) -> str:
    """What marks a read function of the releases before the answers' version column."""
    columns = {e.split()[1] for e in entries if e.startswith("t ")}
    return (
        " (no version column: an older release's)" if columns and "version" not in columns else ""
    )
