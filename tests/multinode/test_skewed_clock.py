"""Nodes whose clocks are off, on one PostgreSQL database: leases go by the database server's clock. A node whose
clock runs ten minutes ahead (every lease looks run out to it) takes no batch another node is still delivering, and
one whose clock lags ten minutes takes a killed node's batch over once its lease runs out, not ten minutes later.

The partner simulator (in this process) holds the first node's upload until the test lets it go, so the batch is
leased and on the wire exactly while the other node looks at it."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.simulators.agency import Agency, Fault
from gateway.bootstrap import build_app
from gateway.store.db import read_tx
from gateway.store.schema import outbox
from tests.conftest import ROOT
from tests.e2e.test_serve_demo import GATEWAY
from tests.multinode.test_frozen_node import Nodes, _gateway, _rows
from tests.support import wait_for

CLAIMS = 10
SKEW = 600  # seconds: a clock ten minutes off, far past the 3 s leases and the clock watch's alert
SKEWED_NODE = Path(__file__).with_name("skewed_node.py")


@pytest.fixture
def nodes(tmp_path: Path, db_url: str) -> Iterator[Nodes]:
    if db_url.startswith("sqlite"):
        pytest.skip("nodes share leases on PostgreSQL only (SQLite is one node)")
    yield from _gateway(tmp_path, db_url)


class HeldFirst:
    """The partner holds the first request it gets until ``answer`` is set, then answers it with ``fault`` (None:
    takes it as usual); the requests after it are answered at once."""

    def __init__(self, agency: Agency, fault: Fault | None) -> None:
        self.arrived, self.answer = threading.Event(), threading.Event()
        self._take, self._first, self._fault = agency.faults.take, True, fault
        self._lock = threading.Lock()
        agency.faults.take = self  # type: ignore[method-assign]

    def __call__(self) -> Fault | None:
        with self._lock:
            first, self._first = self._first, False
        if not first:
            return self._take()
        self.arrived.set()
        self.answer.wait(120)
        return self._fault


def _serve(cfg: Path, node: str, skew: float = 0.0) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(SKEWED_NODE)] if skew else GATEWAY
    env = {**os.environ, "GATEWAY_NODE_ID": node, "GATEWAY_TEST_SKEW_SECONDS": str(skew)}
    with open(cfg.parent / f"serve-{node}.log", "wb") as log:
        return subprocess.Popen([*cmd, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                                cwd=cfg.parent, env=env)


def _drop(cfg: Path, name: str, prefix: str) -> None:
    """A file of ``CLAIMS`` claims of the demo client (invoice numbers ``<prefix>-0000``...) into its inbox."""
    with open(ROOT / "examples" / "demo.csv", encoding="cp1252", newline="") as fh:
        header, first = list(csv.reader(fh, delimiter=";"))[:2]
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(header)
    for i in range(CLAIMS):
        row = list(first)
        row[0], row[1] = f"{prefix}-{i:04d}", f"K-{prefix}-{i:04d}"
        w.writerow(row)
    path = cfg.parent / "inbox" / "demo" / "upload" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.part")
    tmp.write_bytes(out.getvalue().encode("cp1252"))
    os.rename(tmp, path)


def _statuses(cfg: Path) -> list[tuple[str, str | None]]:
    """(status, lease owner) of each outbox row, oldest first."""
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            rows = conn.execute(select(outbox.c.status, outbox.c.lease_owner).order_by(outbox.c.id))
            return [(status, owner) for status, owner in rows]
    finally:
        app.close()


def test_a_node_whose_clock_runs_ahead_takes_no_batch_another_node_is_delivering(nodes: Nodes) -> None:
    cfg, agency, procs = nodes
    held = HeldFirst(agency, None)
    procs.append(_serve(cfg, "n1"))
    _drop(cfg, "first.csv", "SK1")
    assert held.arrived.wait(60), (cfg.parent / "serve-n1.log").read_text()  # n1's batch is on the wire
    procs.append(_serve(cfg, "ahead", skew=SKEW))
    _drop(cfg, "second.csv", "SK2")
    # n1 works on one batch per partner at a time: the second batch is the ahead node's, and the oldest row
    # (n1's, whose lease looks ten minutes run out by the ahead node's clock) came before it in every look
    wait_for("the second batch to be delivered", lambda: [s for s, _ in _statuses(cfg)[1:]] == ["done"], timeout=60)
    assert _statuses(cfg) == [("leased", "n1"), ("done", "ahead")]  # n1's batch still n1's
    held.answer.set()  # the partner takes n1's batch now
    wait_for("n1 to record its batch", lambda: _statuses(cfg) == [("done", "n1"), ("done", "ahead")], timeout=60)

    assert len(agency.cases) == 2 * CLAIMS and agency.duplicates() == {}
    assert set(agency.create_requests.values()) == {1}, agency.create_requests  # each batch sent once
    rows, handed, subs = _rows(cfg)
    assert sorted(handed) == sorted(agency.cases) and set(handed.values()) == {1}
    assert subs == ["completed", "completed"]
    assert "lease_lost" not in (cfg.parent / "serve-n1.log").read_text()
    assert procs[0].poll() is None and procs[1].poll() is None


def test_a_node_whose_clock_lags_takes_a_killed_nodes_batch_over_when_its_lease_runs_out(nodes: Nodes) -> None:
    cfg, agency, procs = nodes
    held = HeldFirst(agency, Fault.ERROR_503)
    procs.append(_serve(cfg, "n1"))
    _drop(cfg, "first.csv", "SK1")
    assert held.arrived.wait(60), (cfg.parent / "serve-n1.log").read_text()
    procs[0].kill()  # n1 dies with its batch leased (3 s, renewed no more) and on the wire
    procs[0].wait(30)
    held.answer.set()  # n1's request is answered 503 into a closed connection: the partner took nothing

    procs.append(_serve(cfg, "behind", skew=-SKEW))
    # by its own clock n1's lease has ten minutes to go; by the database's it runs out three seconds after n1 died
    wait_for("the lagging node to take the batch over and deliver it",
             lambda: _statuses(cfg) == [("done", "behind")], timeout=60)
    assert len(agency.cases) == CLAIMS and agency.duplicates() == {}
    assert set(agency.create_requests.values()) == {1}, agency.create_requests
    rows, handed, subs = _rows(cfg)
    assert sorted(handed) == sorted(agency.cases) and set(handed.values()) == {1}
    assert subs == ["completed"]
    assert procs[1].poll() is None
