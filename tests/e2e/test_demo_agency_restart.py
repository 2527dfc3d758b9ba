"""`make run` stopped and started twice: the demo agency keeps its books, so the demo claims still reach
closed_paid, each claim stays one case with one file number, and the status numbering goes on."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import msgspec

from adapters.simulators.agency import STATUS_MAP
from adapters.simulators.agency_state import Books
from tests.conftest import write_config
from tests.e2e.test_partner_demo import claims_in, drop_demo
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.support import wait_for

BOOKS = Path("var/partners/demo-agency/agency-state.json")


def start(tmp_path: Path, cfg: Path, run: int) -> subprocess.Popen[str]:
    log = tmp_path / f"serve-{run}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=out, stderr=subprocess.STDOUT,
                                text=True, cwd=tmp_path)
    wait_for(f"serve run {run} to be ready", lambda: "serve.ready" in log.read_text() or proc.poll() is not None)
    assert proc.poll() is None, log.read_text()
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def books(tmp_path: Path) -> Books | None:
    path = tmp_path / BOOKS
    return msgspec.json.decode(path.read_bytes(), type=Books) if path.exists() else None


def test_demo_claims_reach_closed_paid_across_two_restarts(tmp_path: Path, db_url: str) -> None:
    partner = {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
               "options": {"path": "var/partners/demo-agency"}, "status_map": STATUS_MAP,
               "sync": {"every_seconds": 0.3}, "simulator": {"enabled": True, "step_seconds": 2.0}}
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": partner})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0

    proc = start(tmp_path, cfg, 1)
    try:
        drop_demo(tmp_path)
        first = wait_for("the agency to open the cases", lambda: (b := books(tmp_path)) and len(b.cases) == 7 and b)
    finally:
        stop(proc)  # right after the batch was delivered: nothing has moved on at the agency yet
    stop(start(tmp_path, cfg, 2))
    proc = start(tmp_path, cfg, 3)
    try:
        paid = wait_for("claims paid after two restarts", lambda: claims_in(cfg, "closed_paid", 7), 30)
    finally:
        stop(proc)

    last = books(tmp_path)
    assert last is not None
    numbers = {c.claim_id: c.file_number for c in first.cases}
    assert {c.claim_id: c.file_number for c in last.cases} == numbers
    # The same cases, not new ones opened again from the batch file at each start ...
    assert {c.claim_id: c.created_at for c in last.cases} == {c.claim_id: c.created_at for c in first.cases}
    # ... and the journal went on from where it was: what the gateway may have read is still there.
    assert last.journal[:len(first.journal)] == first.journal
    assert set(last.cases_created.values()) == {1} and last.next_number == 8
    assert {int(p["id"]) for p in paid} == set(numbers)
    ids = [u.update_id for u in last.journal]
    assert ids == [f"demo-agency-{n}" for n in range(1, len(ids) + 1)]  # the numbering went on, never restarted
    for claim in paid:
        hist = json.loads(gateway(cfg, "claims", "history", str(claim["id"]), "--json").stdout)
        refs = {e["data"].get("partner_reference") for e in hist if e["kind"] == "partner_status"}
        assert refs == {numbers[int(claim["id"])]}  # one case, one file number, in every status it reported
