"""Three `gateway serve` nodes on one PostgreSQL database and one inbox folder: ten files moved in at once,
one node killed with SIGKILL while it ingests. Every file ends as one submission with one ack, every
claim is stored once, and every node still ingests afterwards (the killed one after its restart)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import build_app
from gateway.store.db import read_tx
from gateway.store.schema import claims, leases, submissions
from tests.conftest import write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway, wait_for
from tests.sftp_support import client_csv

ROWS = 1500
CLIENTS = ("demo", "shop")


class Node:
    def __init__(self, cfg: Path, node_id: str) -> None:
        self.cfg, self.node_id, self.runs = cfg, node_id, 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = cfg.parent / f"{node_id}-0.log"

    def start(self) -> None:
        self.runs += 1
        self.log = self.cfg.parent / f"{self.node_id}-{self.runs}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([*GATEWAY, "--config", str(self.cfg), "serve"], stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.cfg.parent,
                                         env={**os.environ, "GATEWAY_NODE_ID": self.node_id})

    def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        return "serve.ready" in self.log.read_text()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)


@pytest.fixture
def cluster(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, list[Node]]]:
    if db_url.startswith("sqlite"):
        pytest.skip("several nodes share one database on PostgreSQL only (SQLite is one node)")
    clients = {cid: {"name": cid, "mapping": "demo", "default_partner": "demo-agency"} for cid in CLIENTS}
    cfg = write_config(tmp_path, db_url, clients=clients, routing=[{"partner": "demo-agency"}],
                       node={"lease_seconds": 4}, watcher={"stable_seconds": 0.3, "sweep_seconds": 1},
                       dispatcher={"batch_size": 500, "poll_seconds": 0.2})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    nodes = [Node(cfg, f"node-{i}") for i in range(3)]
    try:
        yield cfg, nodes
    finally:
        for n in nodes:
            n.stop()


def _query(cfg: Path, q: object) -> list[tuple[object, ...]]:
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            return [tuple(r) for r in conn.execute(q)]  # type: ignore[call-overload]
    finally:
        app.close()


def _ack_rows(ack: Path) -> list[str]:
    with open(ack, encoding="utf-8", newline="") as fh:
        return [r["outcome"] for r in csv.DictReader(fh, delimiter=";")]


def _move_in(tmp_path: Path, files: list[tuple[str, Path]]) -> None:
    for client_id, f in files:
        os.rename(f, tmp_path / "inbox" / client_id / "upload" / f.name)  # at once, as a batch job would


def test_three_nodes_one_inbox_one_killed(cluster: tuple[Path, list[Node]], tmp_path: Path) -> None:
    cfg, nodes = cluster
    for n in nodes:
        n.start()
    wait_for("three nodes ready", lambda: all(n.ready() for n in nodes), 60)
    staging = tmp_path / "staging"
    staging.mkdir()
    files = [(CLIENTS[i % 2], client_csv(staging / f"run-{i:02d}.csv", ROWS, f"R{i:02d}", seed=i)) for i in range(10)]
    _move_in(tmp_path, files)

    # Kill whichever node is ingesting (holds a client's ingest lease with a file half stored).
    def ingesting() -> str | None:
        held = _query(cfg, select(leases.c.owner).where(leases.c.name.like("ingest:%")))
        busy = _query(cfg, select(func.count()).select_from(submissions).where(submissions.c.status == "processing"))
        return str(held[0][0]) if held and busy[0][0] else None
    victim_id = wait_for("a node in the middle of an ingest", ingesting, 60)
    victim = next(n for n in nodes if n.node_id == victim_id)
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(30)

    acks = [tmp_path / "inbox" / c / "ack" / f"{f.name}.ack.csv" for c, f in files]
    wait_for("ten acks (the victim's file taken over when its lease ran out)",
             lambda: all(a.exists() for a in acks), 180)
    for ack in acks:
        assert _ack_rows(ack) == ["accepted"] * ROWS, ack.name
    wait_for("empty upload folders",
             lambda: not [p for c in CLIENTS for p in (tmp_path / "inbox" / c / "upload").iterdir()], 30)
    subs = _query(cfg, select(submissions.c.filename, submissions.c.status))
    assert sorted(subs) == sorted((f.name, "completed") for _, f in files)
    n_claims, n_refs = _query(cfg, select(func.count(), func.count(func.distinct(claims.c.creditor_reference))))[0]
    assert n_claims == n_refs == 10 * ROWS

    # Every node still ingests: the victim comes back (its own lease is its own at once) and more files come.
    victim.start()
    wait_for("the victim ready again", victim.ready, 60)
    more = [(CLIENTS[i % 2], client_csv(staging / f"more-{i}.csv", 200, f"M{i}", seed=20 + i)) for i in range(6)]
    _move_in(tmp_path, more)
    acks = [tmp_path / "inbox" / c / "ack" / f"{f.name}.ack.csv" for c, f in more]
    wait_for("the later files acked", lambda: all(a.exists() for a in acks), 120)
    assert all(_ack_rows(a) == ["accepted"] * 200 for a in acks)
    assert all(n.proc is not None and n.proc.poll() is None for n in nodes)
    for n in nodes:
        log = n.log.read_text()
        assert "supervisor.gave_up" not in log and "Traceback" not in log, (n.node_id, log[-3000:])
    assert all(n.stop() == 0 for n in nodes)
    total = _query(cfg, select(func.count()).select_from(claims))[0][0]
    assert total == 10 * ROWS + 6 * 200
