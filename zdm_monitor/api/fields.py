"""The query's field types: each reads one parameter strictly and says why it refuses a value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from .messages import Message, say

MAX_NAME_LENGTH = 255
ANY_CASE = "Case-insensitive; surrounding spaces are ignored."
# The documented form of text_refusal: no NUL, no U+FFFD (what undecodable bytes become).
TEXT_PATTERN = "^[^\\u0000\\uFFFD]*$"
DRIVE_PATTERN = re.compile(r"([A-Za-z])(:\\?)?")


def text_refusal(value: str, max_length: int) -> Message | None:
    """Why text is refused that the database cannot hold or the client did not mean, if it is."""
    if "\x00" in value or "\ufffd" in value:
        return say("bad_text")
    if len(value) > max_length:
        return say("too_long", length=max_length)
    return None


class Text(fields.String):
    """A string with a length bound and no NUL or undecodable bytes."""

    def __init__(self, max_length: int = MAX_NAME_LENGTH, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(maxLength=max_length)
        kwargs["metadata"].setdefault("pattern", TEXT_PATTERN)
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        refusal = text_refusal(text, self.max_length)
        if refusal is not None:
            raise ValidationError([refusal])
        return text


class Choice(fields.String):
    """One of a fixed set of lower-case names; case-insensitive, with aliases."""

    def __init__(
        self, choices: tuple[str, ...], aliases: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        self.aliases = dict(aliases or {})
        # Documented with its aliases: what the API accepts, as sent; the leniency for case and
        # spaces is said in words, which a schema's enum cannot carry.
        metadata = kwargs.setdefault("metadata", {})
        metadata["enum"] = [*choices, *self.aliases]
        metadata["description"] = f"{metadata['description']} {ANY_CASE}"
        super().__init__(**kwargs)
        self.choices = choices
        self.reason = say("one_of", names=", ".join(choices))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs).strip().lower()
        name = self.aliases.get(name, name)
        if name not in self.choices:
            raise ValidationError([self.reason])
        return name


class Bounded(fields.Integer):
    """A whole number in ASCII digits within [minimum, maximum]."""

    def __init__(self, maximum: int, minimum: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).update(minimum=minimum, maximum=maximum)
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum
        self.reason = say("whole_number", minimum=minimum, maximum=maximum)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        text = str(value)
        # The length check keeps int() away from huge digit strings.
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(self.maximum))):
            raise ValidationError([self.reason])
        number = int(text)
        if not self.minimum <= number <= self.maximum:
            raise ValidationError([self.reason])
        return number


class Flag(Choice):
    """true or false, case-insensitive; 1 and 0 too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(("true", "false"), aliases={"1": "true", "0": "false"}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:  # type: ignore[override]
        return super()._deserialize(value, attr, data, **kwargs) == "true"

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        """Write the documented default as the query string spells it."""
        return None if value is None else "true" if value else "false"


class Partition(Text):
    """A Linux mount point; a trailing slash other than the root is ignored."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        path = super()._deserialize(value, attr, data, **kwargs)
        if not path.startswith("/"):
            raise ValidationError([say("mount_point")])
        return path.rstrip("/") or "/"


class Drive(fields.String):
    """A Windows drive letter: C, c, C: and c: all mean C:."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        match = DRIVE_PATTERN.fullmatch(super()._deserialize(value, attr, data, **kwargs))
        if match is None:
            raise ValidationError([say("drive_letter")])
        return f"{match.group(1).upper()}:"
