"""Scale-out on one machine: nginx -> two gunicorn nodes -> PgBouncer -> replica (or primary).

Real nginx, gunicorn, PgBouncer (transaction pooling) and PostgreSQL (a primary and a streaming
replica made with pg_basebackup -R), all on loopback. One cluster serves the module; each test
leaves it as it found it. The `zdm-dev cluster` command has a test of its own.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.api import JOB_URL, LINUX_EXAMPLE, SECRET, make_token, success_body
from support.drill import Tally, load
from support.launcher import launch
from support.processes import (
    alive,
    clean_env,
    descendants,
    free_ports,
    http_get,
    json_lines,
    kill_leftovers,
    wait_until,
)

from zdm_devstack.cluster import REPLICA_DB, ROLE, Cluster
from zdm_devstack.postgres import EmbeddedPostgres

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

WORKERS = 2
# gunicorn.conf.py's default threads per worker: a node has WORKERS x THREADS requests in flight.
THREADS = 4
LOAD_THREADS = 6
LOAD_SECONDS = 6.0
# ZDM_REPLICA_MAX_LAG_S's default: a line written on the primary is served within it.
MAX_LAG_S = 5.0
# The nodes' monitors look once a second; PgBouncer holds a query for a dead server up to 2 s.
NOTICE_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster")
    with (data_dir / "cluster-output.log").open("wb") as output:
        running = Cluster(
            data_dir,
            free_ports(4),
            workers=WORKERS,
            # The nodes' snapshot caches off: the failover tests need every read to reach a
            # database (tests/data/test_cache.py covers the cache, its replica rule included).
            env=clean_env(ZDM_JWT_SECRET=SECRET, ZDM_CACHE_SIZE="0"),
            output=output,
        )
        try:
            running.start()
            yield running
        finally:
            try:
                running.stop()
            finally:
                # Should stop() itself fail, end what this fixture started, and only that.
                kill_leftovers(running.processes())
                for server in (running.replica, running.postgres):
                    if server is not None:
                        server.stop()


def base(cluster: Cluster) -> str:
    return f"http://127.0.0.1:{cluster.port}"


def get_job(cluster: Cluster, query: str = "") -> dict[str, Any]:
    status, body = http_get(f"{base(cluster)}{JOB_URL}1{query}", make_token())
    assert status == 200, body
    return body


def reads(cluster: Cluster) -> dict[str, float]:
    """zdm_db_reads_total by target, summed over both nodes (asked directly, not via nginx)."""
    total = {"primary": 0.0, "replica1": 0.0}
    for port in cluster.node_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "zdm_db_reads_total":
                    total[sample.labels["target"]] += sample.value
    return total


def replica_states(cluster: Cluster, asks: int = 8) -> set[str]:
    """The replica's states as the nodes' workers report them in /readyz (asked directly)."""
    seen = set()
    for port in cluster.node_ports:
        for _ in range(asks):
            status, body = http_get(f"http://127.0.0.1:{port}/readyz")
            assert status == 200, body
            seen.update(r["state"] for r in body["data"]["replicas"])
    return seen


def pgbouncer_transactions(cluster: Cluster, database: str) -> int:
    """PgBouncer's own count of transactions it passed to a database (SHOW STATS)."""
    for stats in cluster.pgbouncer.show("STATS", ROLE):
        if stats["database"] == database:
            return int(stats["total_xact_count"])
    raise AssertionError(f"PgBouncer has no database {database}")


def on_server(server: EmbeddedPostgres | None, statement: str, *params: Any) -> Any:
    """Run a statement as the superuser; its first row."""
    assert server is not None
    with closing(psycopg2.connect(server.url())) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchone() if cur.description else None


def run_load(cluster: Cluster, during: Any) -> Tally:
    """LOAD_THREADS clients through nginx for LOAD_SECONDS; `during` runs a third of the way in."""
    tally = Tally()
    threads = load(cluster.port, LOAD_SECONDS, LOAD_THREADS, tally)
    time.sleep(LOAD_SECONDS / 3)
    during()
    for thread in threads:
        thread.join(timeout=LOAD_SECONDS + 30)
    return tally


def assert_no_failed_request(tally: Tally, after: float) -> None:
    assert tally.errors == {}, tally.errors
    assert dict(tally.statuses) == {200: tally.statuses[200]}, tally.statuses
    assert tally.sent > 100, tally.sent
    assert any(t > after for t in tally.ok_times), "nothing was served after the fault"


def test_the_seed_request_is_answered_by_the_replica_through_pgbouncer(cluster: Cluster) -> None:
    for name in ("DATABASE_URL", "DATABASE_REPLICA_URLS"):
        assert f"@127.0.0.1:{cluster.pgbouncer.port}/" in cluster.env[name], name
    assert replica_states(cluster) == {"ok"}
    before, passed = reads(cluster), pgbouncer_transactions(cluster, REPLICA_DB)
    requests = 30
    for _ in range(requests):
        body = get_job(cluster)
        assert body.pop("requestID") and body.pop("timestamp")
        assert body == success_body(LINUX_EXAMPLE)
    after = reads(cluster)
    assert after["replica1"] - before["replica1"] == requests
    assert after["primary"] == before["primary"]
    # PgBouncer passed them on (the nodes' monitors add a few a second, far fewer than 30).
    assert pgbouncer_transactions(cluster, REPLICA_DB) - passed >= requests
    # And the replica ran them, as the service's SELECT-only role.
    row = on_server(
        cluster.replica,
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
        " AND query LIKE '%%zdm_monitor_job_snapshot%%'",
        ROLE,
    )
    assert row[0] >= 1


def test_a_line_written_on_the_primary_is_served_within_the_lag_bound(cluster: Cluster) -> None:
    message = f"written on the primary {uuid.uuid4().hex}"
    before = reads(cluster)
    on_server(
        cluster.postgres,
        "INSERT INTO backup_log (backup_id, line, logged_at, message)"
        " SELECT 1, max(line) + 1, now(), %s FROM backup_log WHERE backup_id = 1",
        message,
    )
    written = time.monotonic()
    try:
        seen = wait_until(
            lambda: get_job(cluster, "?limit=1")["data"]["job"]["log"] == [message], MAX_LAG_S
        )
        took = time.monotonic() - written
        assert seen, f"the line did not appear within {MAX_LAG_S} s"
        after = reads(cluster)
        assert after["primary"] == before["primary"]  # it came through the replica
        assert after["replica1"] > before["replica1"]
        print(f"\nline written on the primary served through the replica after {took:.3f} s")
    finally:
        on_server(cluster.postgres, "DELETE FROM backup_log WHERE message = %s", message)
    assert wait_until(lambda: get_job(cluster)["data"] == LINUX_EXAMPLE, MAX_LAG_S)


def access_log_size(cluster: Cluster) -> int:
    return (cluster.nginx_dir / "access.log").stat().st_size


def access_records(cluster: Cluster, since: int) -> list[dict[str, Any]]:
    """nginx's access log lines from byte `since` on."""
    with (cluster.nginx_dir / "access.log").open("rb") as log:
        log.seek(since)
        return json_lines(log.read().decode("utf-8", errors="replace"))


def upstreams(cluster: Cluster, since: int) -> list[str]:
    """The nodes nginx tried for each request logged from byte `since` on ("a, b": a retry)."""
    return [str(r.get("upstream", "")) for r in access_records(cluster, since)]


def report(what: str, cluster: Cluster, since: int) -> None:
    times = sorted(float(r["request_time"]) for r in access_records(cluster, since))
    print(
        f"\n{what}: {len(times)} requests; slowest {times[-1]:.3f} s,"
        f" p99 {times[int(len(times) * 0.99)]:.3f} s"
    )


def answers_cut_short(cluster: Cluster, since: int) -> int:
    """Answers an upstream stopped sending midway, from nginx's error log (byte `since` on)."""
    with (cluster.nginx_dir / "error.log").open("rb") as log:
        log.seek(since)
        text = log.read().decode("utf-8", errors="replace")
    return text.count("while reading upstream,")


def both_nodes_serve(cluster: Cluster) -> bool:
    """Whether nginx sends requests to both nodes (it skips a failed one for fail_timeout)."""
    since = access_log_size(cluster)
    for _ in range(6):
        get_job(cluster)
    used = set(upstreams(cluster, since))
    return used == {f"127.0.0.1:{port}" for port in cluster.node_ports}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_losing_a_gunicorn_node_under_load_fails_no_request(
    cluster: Cluster, signum: signal.Signals
) -> None:
    node = cluster.nodes[1]
    assert node is not None and node.poll() is None
    assert wait_until(lambda: len(descendants(node.pid)) == WORKERS, 10)
    workers = descendants(node.pid)
    # After an earlier test's fault nginx may still skip node 2: this test needs it in use.
    assert wait_until(lambda: both_nodes_serve(cluster), 15, 0.5)
    log_size = access_log_size(cluster)
    stopped_at = 0.0

    def lose_the_node() -> None:
        nonlocal stopped_at
        stopped_at = time.monotonic()
        if signum == signal.SIGKILL:
            # The master and its workers at once, as when the machine goes away.
            os.killpg(node.pid, signal.SIGKILL)
        else:
            node.send_signal(signal.SIGTERM)  # graceful: drain, then exit

    error_log_size = (cluster.nginx_dir / "error.log").stat().st_size
    try:
        tally = run_load(cluster, lose_the_node)
        node.wait(timeout=30)
        assert not [w for w in workers if alive(w)]
        cut = answers_cut_short(cluster, error_log_size)
        if signum == signal.SIGKILL:
            # What nginx cannot retry: an answer the node had begun to send when it died (nginx
            # had passed its status line on). At most the node's requests in flight.
            assert sum(tally.errors.values()) == cut <= WORKERS * THREADS, (tally.errors, cut)
            assert set(tally.errors) <= {"IncompleteRead", "RemoteDisconnected"}, tally.errors
            tally.errors.clear()
        else:
            assert cut == 0
        assert_no_failed_request(tally, stopped_at)
        # nginx sent some requests to the lost node first, then to the other one.
        tried = upstreams(cluster, log_size)
        retried = sum(1 for nodes in tried if "," in nodes)
        assert retried >= 1, set(tried)
        report(
            f"gunicorn node {signum.name} under load ({retried} retried, {cut} cut short)",
            cluster,
            log_size,
        )
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        cluster.start_node(1)


def test_stopping_the_replica_moves_reads_to_the_primary_with_no_failed_request(
    cluster: Cluster,
) -> None:
    replica = cluster.replica
    assert replica is not None
    before = reads(cluster)
    log_size = access_log_size(cluster)
    stopped_at = 0.0

    def stop_the_replica() -> None:
        nonlocal stopped_at
        stopped_at = time.monotonic()
        replica.stop()

    try:
        tally = run_load(cluster, stop_the_replica)
        assert_no_failed_request(tally, stopped_at)
        after = reads(cluster)
        assert after["replica1"] > before["replica1"]  # before the stop
        assert after["primary"] > before["primary"]  # after it
        assert replica_states(cluster) == {"unreachable"}
        report("replica stopped under load", cluster, log_size)
    finally:
        replica.start()
    assert wait_until(lambda: replica_states(cluster) == {"ok"}, NOTICE_S)

    def read_on_the_replica() -> bool:
        """One request, one read; True once it is the replica's. Each worker's monitor sees the
        replica back on its own, so a request may still reach one that has not yet."""
        before = reads(cluster)
        get_job(cluster)
        after = reads(cluster)
        assert sum(after.values()) == sum(before.values()) + 1, (before, after)
        return after["replica1"] == before["replica1"] + 1

    assert wait_until(read_on_the_replica, NOTICE_S)


def test_the_cluster_command_serves_the_seed_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """`make cluster` from a clean data folder: every layer up, the seed answered, Ctrl-C."""
    data_dir = tmp_path / "var"
    port = free_ports(4)
    launcher = launch("cluster", data_dir, port, tmp_path / "cluster.log")
    process = launcher.process
    servers = [EmbeddedPostgres(data_dir / "cluster" / name) for name in ("replica1", "primary")]
    try:
        launcher.wait_healthy()
        assert wait_until(lambda: "curl -X GET" in launcher.output(), 10), launcher.output()
        banner = launcher.output()
        for part, where in [
            ("nginx", f"http://127.0.0.1:{port}"),
            ("gunicorn", f"127.0.0.1:{port + 1}, 127.0.0.1:{port + 2}"),
            ("PgBouncer", f"127.0.0.1:{port + 3}"),
            ("primary", "postgresql://"),
            ("replica", "postgresql://"),
        ]:
            assert re.search(rf"^  {part} +{re.escape(where)}", banner, re.MULTILINE), part
        token = re.findall(r"Bearer token[^\n]*:\n\s+(\S+)\n", banner)[0]
        status, body = http_get(f"{launcher.base}{JOB_URL}1", token)
        assert status == 200, body
        assert body["data"] == LINUX_EXAMPLE
        status, body = http_get(f"{launcher.base}/readyz")
        assert status == 200 and body["data"]["replicas"][0]["state"] == "ok", body

        assert launcher.interrupt() == 0, launcher.output()[-3000:]
        assert wait_until(lambda: not any(alive(p) for p in launcher.gunicorn_pids), 5)
        assert not any(server.running() for server in servers)
    finally:
        if process.poll() is None:
            launcher.clean_up()
        for server in servers:
            server.stop()
