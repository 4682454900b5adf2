"""What zdm_monitor/runtime/worker.py takes from gunicorn's gthread worker, not gunicorn's API.

The worker overrides gthread's methods, calls them, and reads their state, so setup.cfg pins the
one gunicorn release this was read from. These tests fail when that release is not the one
installed, or when a name the worker relies on, or the code of a method it replaces, is not as
it was read: read the new gthread against worker.py before moving the pin.
"""

from __future__ import annotations

import configparser
import hashlib
import inspect
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gunicorn
import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http import parser
from gunicorn.http.errors import InvalidRequestLine, LimitRequestHeaders
from gunicorn.http.parser import Parser
from gunicorn.http.unreader import Unreader
from gunicorn.workers import gthread
from gunicorn.workers.gthread import PollableMethodQueue, TConn, ThreadWorker

from zdm_monitor.runtime.worker import CapturedPage, HeadFirstWorker

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"

# gthread's methods the worker overrides, each called with the same parameters as gthread's.
OVERRIDDEN = [
    "init_process",
    "enqueue_req",
    "accept",
    "on_client_socket_readable",
    "handle",
    "handle_request",
    "_keepalive_after",
    "finish_request",
    "murder_pending",
    "handle_error",
]
# The state the worker reads and changes, as ThreadWorker.__init__ leaves it.
STATE = ["poller", "tpool", "method_queue", "keepalived_conns", "pending_conns", "nr_conns"]
STATE += ["worker_connections", "alive", "cfg", "log"]

# The code the worker replaces, copies or depends on the inside of, as gunicorn 27.0.1 wrote it
# (the first 16 hex digits of the SHA-256 of its source). accept is copied, made non-blocking.
READ = {
    "gthread.ThreadWorker.accept": "f8dcead3dce5c851",
    "gthread.ThreadWorker.on_client_socket_readable": "aead1a3ea7b7daff",
    "gthread.ThreadWorker.finish_request": "616e7bb15a009ff7",
    "gthread.ThreadWorker.handle": "ca85c9be3df75da4",
    "gthread.ThreadWorker.handle_request": "6d0de5b919102efc",
    "gthread.ThreadWorker._keepalive_after": "4ebdbbc8bf5aafa5",
    "gthread.ThreadWorker.murder_pending": "7bf11f46454296e1",
    "gthread.ThreadWorker.run": "f92c7394d85715a4",
    "gthread.TConn": "e3a2878ba952710a",
    "parser.Parser.finish_body": "54c5d0d28c2626ea",
    "util.write_error": "bd0143a03c15a2c8",
    "util.write_nonblock": "d2ff97701c36645e",
}
MODULES = {"gthread": gthread, "parser": parser, "util": util}


def digest(code: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(code).encode()).hexdigest()[:16]


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.fixture
def worker() -> Iterator[ThreadWorker]:
    """A gthread worker as constructed before its process starts (nothing runs)."""
    cfg = Config()
    made = ThreadWorker(0, 0, [], None, 30, cfg, Logger(cfg))
    yield made
    made.tmp.close()  # the heartbeat file every gunicorn worker makes


def test_the_installed_gunicorn_is_the_pinned_release() -> None:
    setup = configparser.ConfigParser()
    setup.read(SETUP_CFG)
    pinned = re.search(r"^gunicorn==(\S+)$", setup["options"]["install_requires"], re.M)
    assert pinned is not None, "setup.cfg must pin gunicorn to one release"
    assert gunicorn.__version__ == pinned[1]


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_each_method_the_worker_overrides_is_gthread_s_with_its_parameters(name: str) -> None:
    assert name in vars(HeadFirstWorker), f"worker.py no longer overrides {name}"
    assert hasattr(ThreadWorker, name), f"gthread has no {name}: the override is never called"
    assert parameters(getattr(HeadFirstWorker, name)) == parameters(getattr(ThreadWorker, name))


def test_the_state_the_worker_uses_is_gthread_s(worker: ThreadWorker) -> None:
    assert [name for name in STATE if not hasattr(worker, name)] == []
    assert parameters(TConn) == ["cfg", "sock", "client", "server"]
    assert parameters(PollableMethodQueue.defer) == ["self", "callback", "args"]
    assert parameters(Parser.finish_body) == ["self", "deadline", "max_bytes"]
    assert parameters(Unreader.unread) == ["self", "data"]
    assert parameters(Unreader.take_buffered) == ["self"]
    # The loop calls these after its events; the worker closes overdue connections in them.
    assert "self.murder_pending()" in inspect.getsource(ThreadWorker.run)


@pytest.mark.parametrize("name", list(READ))
def test_the_code_the_worker_was_read_against_is_unchanged(name: str) -> None:
    module, *path = name.split(".")
    code: Any = MODULES[module]
    for part in path:
        assert hasattr(code, part), f"gunicorn has no {name} any more"
        code = getattr(code, part)
    assert digest(code) == READ[name], f"{name} changed: read runtime/worker.py against it"


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (InvalidRequestLine("x"), 400, "Bad Request"),
        (LimitRequestHeaders("x"), 431, "Request Header Fields Too Large"),
    ],
)
def test_gunicorn_s_error_page_is_caught_before_the_client_sees_it(
    worker: ThreadWorker, error: Exception, status: int, reason: str
) -> None:
    """gthread's handle_error writes its HTML page with util.write_error: CapturedPage, given
    as the client's socket, keeps the status line and lets nothing through."""
    server, client = socket.socketpair()
    with server, client:
        page = CapturedPage(server)
        worker.handle_error(None, page, ("127.0.0.1", 1), error)
        assert (page.status, page.reason) == (status, reason)
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(1)
