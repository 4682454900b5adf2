"""Every layer of the scaled-out service on one machine, on loopback.

nginx -> gunicorn nodes -> PgBouncer (transaction pooling) -> a PostgreSQL primary and a
streaming replica made with pg_basebackup -R. Files live under <data folder>/cluster; the
development secret is the data folder's, as for `serve` and `token`.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import IO

from .demo import prepare_database
from .pgbouncer import PgBouncer
from .postgres import EmbeddedPostgres
from .stack import (
    SERVICE_ROLE,
    Stack,
    create_reader,
    spawn_gunicorn,
    start_nginx,
    use_dev_secret,
)

NODES = 2
# The role the nodes log in as: SELECT only (docs/deploying.md, "Database role").
ROLE = SERVICE_ROLE
PRIMARY_DB, REPLICA_DB = "zdm", "zdm_replica1"
SLOT = "replica1"


class Cluster(Stack):
    """nginx on port, gunicorn nodes on the next ports, PgBouncer after them, then PostgreSQL."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        nodes: int = NODES,
        workers: int | None = None,
        env: dict[str, str] | None = None,
        output: IO[bytes] | None = None,
    ) -> None:
        super().__init__(data_dir, port, nginx=True, workers=workers, env=env, output=output)
        self.folder = self.data_dir / "cluster"
        self.node_ports = [port + n for n in range(1, nodes + 1)]
        self.nodes: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self.replica: EmbeddedPostgres | None = None
        self.pgbouncer = PgBouncer(self.folder / "pgbouncer", port + nodes + 1, {}, {ROLE: None})

    @property
    def nginx_dir(self) -> Path:
        return self.folder / "nginx"

    def ports(self) -> list[int]:
        return [self.port, *self.node_ports, self.pgbouncer.port]

    def _start_parts(self) -> None:
        self._start_databases()
        self.pgbouncer.start(self.output)
        self._configure_nodes()
        for index in range(len(self.nodes)):
            self.start_node(index)
        self.nginx = start_nginx(self.nginx_dir, self.port, self.node_ports, self.output)

    def _start_databases(self) -> None:
        self.postgres = EmbeddedPostgres(self.folder / "primary")
        primary_url = self.postgres.start()
        self.demo_loaded = prepare_database(primary_url)
        create_reader(primary_url, ROLE)
        self.replica = EmbeddedPostgres(self.folder / "replica1")
        replica_url = self.replica.replicate(self.postgres, SLOT)
        self.pgbouncer.databases = {PRIMARY_DB: primary_url, REPLICA_DB: replica_url}

    def _configure_nodes(self) -> None:
        use_dev_secret(self.env, self.data_dir)
        assert self.postgres is not None
        self.env.update(
            DATABASE_URL=self.pgbouncer.url(PRIMARY_DB, ROLE),
            DATABASE_REPLICA_URLS=self.pgbouncer.url(REPLICA_DB, ROLE),
            ZDM_PROXY_COUNT="1",
        )
        if self.workers:
            self.env["GUNICORN_WORKERS"] = str(self.workers)

    def start_node(self, index: int) -> subprocess.Popen[bytes]:
        """Start (or start again) gunicorn node index, files under cluster/node<index + 1>."""
        run_dir = self.folder / f"node{index + 1}"
        run_dir.mkdir(parents=True, exist_ok=True)
        node = spawn_gunicorn(self.env, self.node_ports[index], run_dir, self.output)
        self.nodes[index] = node
        return node

    def processes(self) -> list[subprocess.Popen[bytes]]:
        running = [*self.nodes, self.nginx, self.pgbouncer.process]
        return [p for p in running if p is not None]

    def where(self) -> str:
        return (
            f"nginx on http://127.0.0.1:{self.port} -> {len(self.nodes)} gunicorn nodes"
            " -> PgBouncer -> PostgreSQL replica (primary when it cannot serve)"
        )

    def layers(self) -> list[tuple[str, str]]:
        """Each part and where it listens."""
        assert self.postgres is not None and self.replica is not None
        workers = self.env.get("GUNICORN_WORKERS", "default")
        return [
            ("nginx", f"http://127.0.0.1:{self.port} (a failed GET is retried on another node)"),
            (
                "gunicorn",
                ", ".join(f"127.0.0.1:{p}" for p in self.node_ports) + f" ({workers} workers each)",
            ),
            (
                "PgBouncer",
                f"127.0.0.1:{self.pgbouncer.port}, transaction pooling:"
                f" {PRIMARY_DB} -> primary, {REPLICA_DB} -> replica",
            ),
            ("primary", f"{self.postgres.url()} (Unix socket)"),
            ("replica", f"{self.replica.url()} (streaming, slot {SLOT})"),
        ]

    def stop(self) -> None:
        """Stop nginx, then the nodes (draining, together), PgBouncer, the replica, the primary."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            self.nginx.wait(timeout=30)
        running = [n for n in self.nodes if n is not None and n.poll() is None]
        for node in running:
            node.send_signal(signal.SIGTERM)
        for node in running:
            node.wait(timeout=60)
        self.pgbouncer.stop()
        for server in (self.replica, self.postgres):
            if server is not None and server.started:
                server.stop()
        self.release_data_folder()
