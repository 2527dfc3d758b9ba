"""A node frozen (SIGSTOP: a VM freeze, a long GC pause, a closed laptop lid) past its lease in the middle of a
partner call, while another node takes the batch over, then let go on (SIGCONT): the partner gets every claim
once, and the node that wakes up sends nothing more, records no second outcome and writes no second ack. Alone
(SQLite's case), a node whose leases ran out while it was frozen simply goes on.

The freeze is placed deterministically: the partner simulator (in this process) holds the frozen node's request
until the other node has delivered the batch, then answers it 503, which the woken node would retry in-call."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from adapters.simulators.agency import Agency, Fault
from adapters.simulators.http_sim import HttpAgencySimulator
from gateway.bootstrap import build_app
from gateway.store.db import read_tx
from gateway.store.schema import claim_events, outbox, submissions
from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.support import wait_for

CLAIMS = 20
LEASE = 3.0  # node and outbox leases: the freeze outlasts them several times


def _claims_file(path: Path) -> None:
    with open(ROOT / "examples" / "demo.csv", encoding="cp1252", newline="") as fh:
        header, first = list(csv.reader(fh, delimiter=";"))[:2]
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(header)
    for i in range(CLAIMS):
        row = list(first)
        row[0], row[1] = f"FZ-{i:04d}", f"K-FZ-{i:04d}"
        w.writerow(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(out.getvalue().encode("cp1252"))
    os.rename(tmp, path)


class HeldRequest:
    """The partner holds the first request it gets (the frozen node's upload) until told to answer it, then
    answers 503: the caller would try again in the same call, the classic double send of a stale node."""

    def __init__(self, agency: Agency) -> None:
        self.arrived, self.answer = threading.Event(), threading.Event()
        self._take, self._first = agency.faults.take, True
        self._lock = threading.Lock()
        agency.faults.take = self  # type: ignore[method-assign]

    def __call__(self) -> Fault | None:
        with self._lock:
            first, self._first = self._first, False
        if not first:
            return self._take()
        self.arrived.set()
        self.answer.wait(120)
        return Fault.ERROR_503


def _serve(cfg: Path, node: str) -> subprocess.Popen[bytes]:
    with open(cfg.parent / f"serve-{node}.log", "wb") as log:
        return subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                                cwd=cfg.parent, env={**os.environ, "GATEWAY_NODE_ID": node})


Nodes = tuple[Path, Agency, list[subprocess.Popen[bytes]]]


@pytest.fixture
def nodes(tmp_path: Path, db_url: str) -> Iterator[Nodes]:
    """Several nodes (serve processes the test starts) on one PostgreSQL database and their HTTP partner."""
    if db_url.startswith("sqlite"):
        pytest.skip("another node takes over on a shared PostgreSQL only (SQLite is one node)")
    yield from _gateway(tmp_path, db_url)


@pytest.fixture
def lone(tmp_path: Path, db_url: str) -> Iterator[Nodes]:
    """One node, on SQLite or PostgreSQL, and its HTTP partner."""
    yield from _gateway(tmp_path, db_url)


def _gateway(tmp_path: Path, db_url: str) -> Iterator[Nodes]:
    agency = Agency("fz")
    sim = HttpAgencySimulator(agency).start()
    partner = {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
               "options": {"url": sim.url, "timeout": 60}, "sync": {"enabled": False},
               "retry": {"in_call_attempts": 3, "in_call_wait_seconds": 0.05, "in_call_wait_max_seconds": 0.2}}
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner}, node={"lease_seconds": LEASE},
                       dispatcher={"poll_seconds": 0.1, "lease_seconds": LEASE, "backoff_base_seconds": 0.1,
                                   "backoff_max_seconds": 0.5})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield cfg, agency, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        sim.stop()


def _rows(cfg: Path) -> tuple[dict[str, int], dict[int, int], list[str]]:
    """Outbox rows by status; handed_over events per claim; submission statuses."""
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            rows = {s: n for s, n in conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))}
            handed: dict[int, int] = dict(conn.execute(select(claim_events.c.claim_id, func.count())
                                                       .where(claim_events.c.state == "handed_over")
                                                       .group_by(claim_events.c.claim_id)).all())
            subs = [s for (s,) in conn.execute(select(submissions.c.status))]
    finally:
        app.close()
    return rows, handed, subs


def test_node_frozen_mid_delivery_past_its_lease_sends_and_records_nothing_twice(
        nodes: Nodes) -> None:
    cfg, agency, procs = nodes
    held = HeldRequest(agency)
    procs.append(_serve(cfg, "n1"))
    _claims_file(cfg.parent / "inbox" / "demo" / "upload" / "frozen.csv")
    ack = cfg.parent / "inbox" / "demo" / "ack" / "frozen.csv.ack.csv"
    assert held.arrived.wait(60), (cfg.parent / "serve-n1.log").read_text()
    os.kill(procs[0].pid, signal.SIGSTOP)  # n1 stands still with its batch on the wire
    assert ack.exists()  # n1 acked the file before it delivered
    first_ack = ack.stat()

    procs.append(_serve(cfg, "n2"))  # takes the batch over once n1's lease has run out
    wait_for("n2 to deliver the batch", lambda: _rows(cfg)[0] == {"done": 1}, timeout=60)
    assert len(agency.cases) == CLAIMS
    held.answer.set()  # the partner answers n1's request (503) while n1 is still frozen
    os.kill(procs[0].pid, signal.SIGCONT)
    log = cfg.parent / "serve-n1.log"
    wait_for("n1 to notice it lost the batch", lambda: "dispatch.lease_lost" in log.read_text(), timeout=60)

    assert agency.duplicates() == {}
    # after waking, n1 sent nothing again: each claim reached the partner in n2's one request
    assert set(agency.create_requests.values()) == {1}, agency.create_requests
    rows, handed, subs = _rows(cfg)
    assert rows == {"done": 1}
    assert sorted(handed) == sorted(agency.cases) and set(handed.values()) == {1}  # one receipt each
    assert subs == ["completed"]
    assert procs[0].poll() is None and procs[1].poll() is None  # both nodes still serve
    again = ack.stat()  # one ack, written once
    assert (again.st_ino, again.st_mtime_ns) == (first_ack.st_ino, first_ack.st_mtime_ns)
    assert len(ack.read_text(encoding="utf-8").splitlines()) == CLAIMS + 1
    assert [p.name for p in ack.parent.iterdir()] == [ack.name]


def test_node_frozen_in_a_resume_past_its_lease_writes_no_second_ack(
        nodes: Nodes) -> None:
    """n1 resumes a submission a crash left between its last chunk and its ack, and stands still (frozen) in the
    middle; n2 takes the client's lease over, finishes the submission and writes the ack, which the client
    fetches and removes. n1, woken up, must not write the ack again: the client would get a second one."""
    cfg, _, procs = nodes
    src = cfg.parent / "resumed.csv"
    _claims_file(src)
    done = gateway(cfg, "ingest", str(src), "--client", "demo", "--json")
    assert done.returncode == 0, done.stderr
    app = build_app(cfg)
    try:
        with app.engine.begin() as conn:  # the state a crash after the last chunk leaves: rows stored, no ack
            ack = Path(conn.execute(select(submissions.c.ack_path)).scalar_one())
            conn.execute(submissions.update().values(status="processing", completed_at=None))
        ack.unlink()
        # n1's resume reads the submission's findings first: a lock held on them here holds n1 there, so that
        # it is frozen in the middle of its resume, never before nor after it
        blocker = app.engine.connect()
        lock_tx = blocker.begin()
        blocker.execute(text("LOCK TABLE submission_findings IN ACCESS EXCLUSIVE MODE"))

        def n1_waits() -> bool:
            with app.engine.connect() as conn:
                return bool(conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                              "'submission_findings'::regclass")).scalar_one())

        procs.append(_serve(cfg, "n1"))
        wait_for("n1 to resume the submission", n1_waits, timeout=60)
        os.kill(procs[0].pid, signal.SIGSTOP)
        lock_tx.commit()
        blocker.close()

        procs.append(_serve(cfg, "n2"))  # resumes it once n1's lease on the client has run out
        wait_for("n2 to finish the submission", lambda: _rows(cfg)[2] == ["completed"] and ack.exists(), timeout=60)
        assert len(ack.read_text(encoding="utf-8").splitlines()) == CLAIMS + 1
        ack.unlink()  # the client fetched its ack and removed it
        os.kill(procs[0].pid, signal.SIGCONT)
        log = cfg.parent / "serve-n1.log"
        wait_for("n1 to notice it lost the client's lease", lambda: "LeaseLost" in log.read_text()
                 or "ingest.resume_taken_over" in log.read_text(), timeout=60)
    finally:
        app.close()
    assert not ack.exists(), "the woken node wrote the file's ack a second time"
    assert [p.name for p in ack.parent.iterdir()] == []  # nor left a temp file behind
    assert _rows(cfg)[2] == ["completed"]
    assert procs[0].poll() is None and procs[1].poll() is None
    assert "supervisor.task_failed" not in (cfg.parent / "serve-n1.log").read_text()  # taken over is no failure


def test_lone_node_frozen_past_its_lease_goes_on_when_it_wakes(lone: Nodes) -> None:
    """One node (SQLite's case): its lease runs out while it is frozen and nobody takes the batch over. Woken, it
    renews the lease, tries its upload again (answered 503 meanwhile) and records the delivery, as if it had
    never stood still."""
    cfg, agency, procs = lone
    held = HeldRequest(agency)
    procs.append(_serve(cfg, "n1"))
    _claims_file(cfg.parent / "inbox" / "demo" / "upload" / "alone.csv")
    assert held.arrived.wait(60), (cfg.parent / "serve-n1.log").read_text()
    os.kill(procs[0].pid, signal.SIGSTOP)
    app = build_app(cfg)
    try:
        def lease_ran_out() -> bool:
            with read_tx(app.engine) as conn:
                until = conn.execute(select(outbox.c.lease_until)).scalar_one()
            return until is not None and until < app.now()

        wait_for("n1's lease on the batch to run out", lease_ran_out, timeout=60)
    finally:
        app.close()
    held.answer.set()
    os.kill(procs[0].pid, signal.SIGCONT)
    wait_for("n1 to deliver the batch", lambda: _rows(cfg)[0] == {"done": 1}, timeout=60)
    rows, handed, subs = _rows(cfg)
    assert len(agency.cases) == CLAIMS and agency.duplicates() == {}
    assert set(agency.create_requests.values()) == {1}  # the held request was answered 503: not processed
    assert sorted(handed) == sorted(agency.cases) and set(handed.values()) == {1}
    assert subs == ["completed"]
    assert "lease_lost" not in (cfg.parent / "serve-n1.log").read_text()
    assert procs[0].poll() is None
