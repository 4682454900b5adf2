"""What the service logs while a block runs, read from its own logger."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def records(name: str = "zdm_monitor") -> Iterator[list[logging.LogRecord]]:
    """The records the named logger handles meanwhile (caplog misses them: the service's logger
    does not propagate once configured)."""
    said: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = said.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)
