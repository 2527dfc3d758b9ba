"""Two `gateway serve` nodes with partner sync on, one PostgreSQL database: every update the agency has is
fetched once in all (a lease per partner, the schedule checked under it), not once per node; and a node
killed -9 during a delivery has its batch delivered again as soon as it is back, never twice."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.simulators.agency import STATUS_MAP, Agency
from adapters.simulators.http_sim import HttpAgencySimulator
from gateway.bootstrap import build_app
from gateway.store.db import read_tx
from gateway.store.schema import outbox
from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import gateway, wait_for
from tests.multinode.test_shared_inbox import Node
from tests.multinode.test_shared_outbox import claims_csv


@pytest.fixture
def agency_partner(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Agency]]:
    if db_url.startswith("sqlite"):
        pytest.skip("several nodes share one database on PostgreSQL only (SQLite is one node)")
    agency = Agency("two", step_seconds=0.3)
    sim = HttpAgencySimulator(agency).start()
    partner = {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
               "options": {"url": sim.url, "timeout": 10}, "status_map": STATUS_MAP, "sync": {"every_seconds": 1},
               "retry": {"in_call_wait_seconds": 0.05, "in_call_wait_max_seconds": 0.2}}
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner}, watcher={"enabled": False},
                       dispatcher={"poll_seconds": 0.1, "batch_size": 50, "lease_seconds": 600})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    try:
        yield cfg, agency
    finally:
        sim.stop()


def _count(cfg: Path, q: Any) -> int:
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            return int(conn.execute(q).scalar_one())
    finally:
        app.close()


def test_two_nodes_fetch_each_update_once(agency_partner: tuple[Path, Agency], tmp_path: Path) -> None:
    cfg, agency = agency_partner
    served: list[int] = []
    lock = threading.Lock()
    real = agency.updates_after

    def counting(cursor: str | None, limit: int = 1000) -> Any:
        time.sleep(0.5)  # a partner API that takes its time: two nodes whose schedules meet would both fetch
        page, nxt = real(cursor, limit)
        with lock:
            served.append(len(page))
        return page, nxt
    agency.updates_after = counting  # type: ignore[method-assign]

    ing = gateway(cfg, "ingest", str(ROOT / "examples" / "demo.csv"), "--client", "demo", "--json")
    assert ing.returncode == 0, ing.stderr
    nodes = [Node(cfg, f"sync-{i}") for i in range(2)]
    try:
        for n in nodes:
            n.start()
        wait_for("both nodes ready", lambda: all(n.ready() for n in nodes), 60)
        wait_for("the demo claims paid", lambda: _paid_count(cfg) == 7, 90)
        # a few more schedules with nothing new: still no entry fetched twice
        rounds = len(served)
        wait_for("more sync rounds", lambda: len(served) >= rounds + 4, 30)
    finally:
        codes = [n.stop() for n in nodes]
    assert codes == [0, 0]
    with agency.lock:
        journal = len(agency.journal)
    assert journal > 0 and sum(served) == journal, (sum(served), journal)
    assert agency.duplicates() == {}


def _paid_count(cfg: Path) -> int:
    out = gateway(cfg, "claims", "list", "--json", "--status", "closed_paid")
    return len(json.loads(out.stdout)) if out.returncode == 0 else 0


def test_a_killed_node_delivers_its_batch_again_as_soon_as_it_is_back(
        agency_partner: tuple[Path, Agency], tmp_path: Path) -> None:
    cfg, agency = agency_partner
    agency.faults.delay_seconds = 2.0  # a slow partner: the kill comes while a batch is in flight
    claims_csv(tmp_path / "some.csv", 100)
    ing = gateway(cfg, "ingest", str(tmp_path / "some.csv"), "--client", "demo", "--json")
    assert ing.returncode == 0, ing.stderr
    node = Node(cfg, "solo")
    node.start()
    wait_for("a leased batch", lambda: _count(cfg, select(func.count()).where(outbox.c.status == "leased")), 60)
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGKILL)
    node.proc.wait(30)
    agency.faults.delay_seconds = 0.0
    # The lease is 600 s: without taking its own leases back the restarted node would wait ten minutes.
    node.start()
    wait_for("every batch delivered within a minute of the restart",
             lambda: _count(cfg, select(func.count()).where(outbox.c.status != "done")) == 0, 60)
    assert "serve.leases_taken_back node=solo" in node.log.read_text()
    assert node.stop() == 0
    assert len(agency.cases) == 100 and agency.duplicates() == {}
