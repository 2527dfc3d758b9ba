"""Several `gateway serve` processes on one PostgreSQL database share the outbox: every claim reaches the
partner exactly once, also when one process is killed with SIGKILL in the middle of a batch while the
partner loses answers and fails requests."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.simulators.agency import STATUS_MAP, Agency, Fault
from adapters.simulators.http_sim import HttpAgencySimulator
from gateway.bootstrap import build_app
from gateway.store.db import read_tx
from gateway.store.schema import claim_events, outbox
from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway, wait_for

CLAIMS = 10_000


def claims_csv(path: Path, n: int) -> None:
    """``n`` valid claims in the demo client's layout, each with its own invoice number."""
    with open(ROOT / "examples" / "demo.csv", encoding="cp1252", newline="") as fh:
        header, first = list(csv.reader(fh, delimiter=";"))[:2]
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\n")
    w.writerow(header)
    for i in range(n):
        row = list(first)
        row[0], row[1] = f"MP-{i:06d}", f"K-{i:06d}"
        w.writerow(row)
    path.write_bytes(out.getvalue().encode("cp1252"))


@pytest.fixture
def cluster(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Agency, HttpAgencySimulator]]:
    if db_url.startswith("sqlite"):
        pytest.skip("several gateway processes share one outbox on PostgreSQL only (SQLite is one node)")
    agency = Agency("mp")
    sim = HttpAgencySimulator(agency).start()
    partner = {"adapter": "http", "certificate": "var/keys/partners/demo-agency.crt",
               "options": {"url": sim.url, "timeout": 10}, "status_map": STATUS_MAP, "sync": {"enabled": False},
               "retry": {"in_call_wait_seconds": 0.05, "in_call_wait_max_seconds": 0.2}}
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner}, watcher={"enabled": False},
                       dispatcher={"poll_seconds": 0.1, "batch_size": 100, "lease_seconds": 5,
                                   "backoff_base_seconds": 0.1, "backoff_max_seconds": 0.5})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    claims_csv(tmp_path / "many.csv", CLAIMS)
    ing = gateway(cfg, "ingest", str(tmp_path / "many.csv"), "--client", "demo", "--json")
    assert ing.returncode == 0, ing.stderr
    try:
        yield cfg, agency, sim
    finally:
        sim.stop()


def start(cfg: Path, n: int) -> list[subprocess.Popen[bytes]]:
    logs = [open(cfg.parent / f"serve-{i}.log", "wb") for i in range(n)]
    # one node id each: a node id is one process at a time (the node lock refuses a second)
    procs = [subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                              cwd=cfg.parent, env={**os.environ, "GATEWAY_NODE_ID": f"node-{i}"})
             for i, log in enumerate(logs)]
    for log in logs:
        log.close()
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def outbox_counts(cfg: Path) -> dict[str, int]:
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            return {s: n for s, n in conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))}
    finally:
        app.close()


def assert_exactly_once(cfg: Path, agency: Agency) -> None:
    assert len(agency.cases) == CLAIMS
    assert agency.duplicates() == {}
    app = build_app(cfg)
    try:
        with read_tx(app.engine) as conn:
            q = (select(claim_events.c.claim_id, func.count()).where(claim_events.c.state == "handed_over")
                 .group_by(claim_events.c.claim_id))
            handed = dict(conn.execute(q).all())
    finally:
        app.close()
    assert sorted(handed) == sorted(agency.cases)
    assert set(handed.values()) == {1}


def test_three_processes_deliver_10000_claims_exactly_once(cluster: tuple[Path, Agency, HttpAgencySimulator]) -> None:
    cfg, agency, _ = cluster
    procs = start(cfg, 3)
    try:
        wait_for("the outbox to drain", lambda: outbox_counts(cfg) == {"done": CLAIMS // 100}, timeout=300)
    finally:
        stop(procs)
    assert_exactly_once(cfg, agency)
    assert max(agency.create_requests.values()) == 1  # no lease expired, so nothing was even re-sent
    app = build_app(cfg)
    with read_tx(app.engine) as conn:
        owners = {r[0] for r in conn.execute(select(outbox.c.lease_owner).distinct())}
    app.close()
    assert len(owners) >= 2  # the work was shared


def test_sigkill_mid_batch_loses_and_duplicates_nothing(cluster: tuple[Path, Agency, HttpAgencySimulator]) -> None:
    cfg, agency, _ = cluster
    agency.faults.delay_seconds = 0.05  # a slow partner, so a batch is in flight when the kill comes
    # and a flaky one: answers lost after the work was done, refusals, errors, cut connections
    for fault in (Fault.LOSE_ANSWER, Fault.ERROR_503, Fault.LOSE_ANSWER, Fault.DROP, Fault.ERROR_500):
        agency.faults.fail_next(fault, times=4)
    procs = start(cfg, 3)
    victim = procs[0]

    def victim_holds_a_lease() -> bool:
        app = build_app(cfg)
        try:
            with read_tx(app.engine) as conn:
                q = select(func.count()).where(outbox.c.status == "leased",
                                               outbox.c.lease_owner == "node-0")
                return int(conn.execute(q).scalar_one()) > 0
        finally:
            app.close()

    try:
        wait_for("the victim to lease a batch", victim_holds_a_lease, timeout=120)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        wait_for("the survivors to drain the outbox (the victim's lease expires)",
                 lambda: outbox_counts(cfg) == {"done": CLAIMS // 100}, timeout=300)
    finally:
        stop(procs)
    assert victim.returncode == -signal.SIGKILL
    assert_exactly_once(cfg, agency)
    assert max(agency.create_requests.values()) >= 2  # claims were sent again after lost answers, and folded
