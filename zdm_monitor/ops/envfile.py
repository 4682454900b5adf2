"""An environment file read as systemd's EnvironmentFile= reads it (systemd.exec(5)), so that
`check --env-file` checks what the unit will get; docs/configuration.md gives the grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NEWLINES = "\n\r"
BLANKS = " \t"
DOUBLE_QUOTE_ESCAPES = '"\\`$'
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A value a POSIX shell (`set -a; . FILE`) reads as systemd does: single-quoted runs, double-quoted
# ones with nothing the shell would expand, and bare characters the shell takes as written.
SAME_IN_A_SHELL = re.compile(r"""(?:'[^']*'|"[^"$`\\]*"|[^\s&|;<>()$`\\"'~])*""")


@dataclass
class EnvFile:
    variables: dict[str, str] = field(default_factory=dict)
    # The assignments a shell reading the file would understand otherwise, one line each.
    disagreements: list[str] = field(default_factory=list)


def read_env_file(text: str) -> EnvFile:
    """The variables systemd would set from this text, and where a shell would read otherwise."""
    found = EnvFile()
    at = 0
    while at < len(text):
        if text[at] in NEWLINES + BLANKS:
            at += 1
            continue
        end_of_line = _end_of_line(text, at)
        equals = text.find("=", at, end_of_line)
        if text[at] in "#;" or equals == -1:
            at = end_of_line
            continue
        key = text[at:equals].rstrip(BLANKS)
        value, end = _value(text, equals + 1)
        found.variables[key] = value
        written = text[equals + 1 : end].rstrip(BLANKS + "\r")
        if not (NAME.fullmatch(text[at:equals]) and SAME_IN_A_SHELL.fullmatch(written)):
            line = text.count("\n", 0, at) + 1
            found.disagreements.append(
                f"line {line}: a shell (set -a; . FILE) reads {key} otherwise than systemd: "
                "write NAME='value', with no blanks around =."
            )
        at = end
    return found


def _end_of_line(text: str, at: int) -> int:
    ends = [i for i in (text.find(c, at) for c in NEWLINES) if i != -1]
    return min(ends, default=len(text))


def _value(text: str, at: int) -> tuple[str, int]:
    """The value that starts at `at`, and where it ends."""
    value: list[str] = []
    bare = False  # inside a bare run: quotes are characters, blanks are kept but trailing ones
    kept = 0  # the length of value without the trailing blanks of a bare run
    while at < len(text) and text[at] not in NEWLINES:
        char = text[at]
        if char == "\\":
            following = text[at + 1 : at + 2]
            if following and following not in NEWLINES:
                value.append(following)
            at, bare, kept = at + 2, True, len(value)
        elif char == "'" and not bare:
            close = text.find("'", at + 1)
            close = len(text) if close == -1 else close
            value.append(text[at + 1 : close])
            at, kept = close + 1, len(value)
        elif char == '"' and not bare:
            at = _double_quoted(text, at + 1, value)
            kept = len(value)
        else:
            if char not in BLANKS:
                value.append(char)
                bare, kept = True, len(value)
            elif bare:
                value.append(char)
            at += 1
    return "".join(value[:kept]), at


def _double_quoted(text: str, at: int, value: list[str]) -> int:
    """Append a double-quoted run whose opening quote is before `at`; return what follows it."""
    while at < len(text) and text[at] != '"':
        char = text[at]
        if char == "\\" and at + 1 < len(text):
            escaped = text[at + 1]
            if escaped in DOUBLE_QUOTE_ESCAPES:
                value.append(escaped)
            elif escaped != "\n":
                value.append(char + escaped)
            at += 2
        else:
            value.append(char)
            at += 1
    return at + 1
