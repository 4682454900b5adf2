"""A TCP proxy in front of PostgreSQL that records the queries its clients send.

It reads the frontend side of protocol 3.0 (the startup message, then typed messages) and
forwards every byte unchanged, so what it counts is what really crossed the wire. Set `silent`
(or have it set by the query that makes `silent_from` queries) and it passes nothing more back
to its clients, as a frozen server or a black-holed network;
set `refuse` and drop() and its clients lose their connections and cannot open new ones.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from contextlib import suppress
from urllib.parse import quote

from psycopg2.extensions import parse_dsn

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
QUERY_MESSAGES = {b"Q": "query", b"P": "parse"}


class CountingProxy:
    def __init__(self, database_url: str) -> None:
        self.target = parse_dsn(database_url)
        self.queries: list[str] = []
        self._lock = threading.Lock()
        self.silent = threading.Event()
        self.silent_from: int | None = None  # the query at which silent is set, if any
        self.refuse = threading.Event()
        self._clients: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The target's URL with host and port swapped for the proxy's."""
        user = quote(self.target.get("user", "postgres"))
        password = quote(self.target.get("password", ""))
        login = f"{user}:{password}" if password else user
        dbname = quote(self.target.get("dbname", "postgres"))
        return f"postgresql://{login}@127.0.0.1:{self.port}/{dbname}?sslmode=disable&gssencmode=disable"

    def take(self) -> list[str]:
        """Return the queries recorded since the last call."""
        with self._lock:
            taken, self.queries = self.queries, []
        return taken

    def close(self) -> None:
        self._listener.close()

    def drop(self) -> None:
        """Cut every client's connection, as a server going away does."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _connect_upstream(self) -> socket.socket:
        host = self.target.get("host", "/tmp")
        port = int(self.target.get("port", 5432))
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
            return upstream
        return socket.create_connection((host, port))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse.is_set():
                client.close()
                continue
            with self._lock:
                self._clients.append(client)
            upstream = self._connect_upstream()
            threading.Thread(
                target=self._client_to_server, args=(client, upstream), daemon=True
            ).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                while self.silent.is_set():
                    time.sleep(0.01)
                sink.sendall(chunk)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        # Each side's reader closes it once that side is done, not the garbage collector.
        source.close()

    def _client_to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = b""
        started = False
        with suppress(OSError):
            while chunk := client.recv(65536):
                # Record before forwarding, so a query is counted before its answer exists.
                buffer, started = self._parse(buffer + chunk, started)
                upstream.sendall(chunk)
        with suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)
        client.close()

    def _parse(self, buffer: bytes, started: bool) -> tuple[bytes, bool]:
        """Consume whole messages from the buffer, recording queries; keep the rest."""
        while True:
            if not started:
                if len(buffer) < 8:
                    return buffer, started
                (length,) = struct.unpack("!I", buffer[:4])
                if len(buffer) < length:
                    return buffer, started
                (code,) = struct.unpack("!I", buffer[4:8])
                started = code not in (SSL_REQUEST, GSSENC_REQUEST)
                buffer = buffer[length:]
                continue
            if len(buffer) < 5:
                return buffer, started
            kind = buffer[:1]
            (length,) = struct.unpack("!I", buffer[1:5])
            if len(buffer) < 1 + length:
                return buffer, started
            if kind in QUERY_MESSAGES:
                body = buffer[5 : 1 + length]
                text = body.split(b"\0", 1)[0] if kind == b"Q" else body.split(b"\0")[1]
                with self._lock:
                    self.queries.append(text.decode("utf-8", "replace"))
                    if self.silent_from is not None and len(self.queries) >= self.silent_from:
                        self.silent.set()
            buffer = buffer[1 + length :]
