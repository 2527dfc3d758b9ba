"""``serve`` erases the data of credit checks past their retention by itself (hourly, first at start), like a
sandbox's claims: the audit row stays. The checks are written straight into the database (no bureau is asked:
the configured one listens nowhere), one older and one younger than the period."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from adapters.bureaus.simulators.http_sim import refused_port
from gateway.bootstrap import build_app
from gateway.store import credit_checks as store
from gateway.store.db import read_tx, write_tx
from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.e2e.test_serve_stop import Serve
from tests.support import wait_for

PLANTED = b"Quetzalwurm-sealed-stand-in"


def test_serve_erases_checks_past_their_retention_and_keeps_the_audit_rows(tmp_path: Path, db_url: str) -> None:
    bureaus = {"j": {"adapter": "http_json", "options": {"url": f"http://127.0.0.1:{refused_port()}"}}}
    cfg = write_config(tmp_path, db_url, dispatcher={"enabled": False}, bureaus=bureaus, credit={"retention_days": 30},
                       clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                         "credit": {"bureaus": ["j"]}}})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    app = build_app(cfg)
    try:
        ids = {}
        with write_tx(app.engine) as conn:
            for name, days in (("old", 31), ("young", 29)):
                ids[name] = store.add(conn, client_id="demo", created_at=app.now() - timedelta(days=days),
                                      requested_by="alice", channel="cli", interest="contract_initiation",
                                      outcome=store.QUERIED, subject_key=f"{name}-key", subject_index=f"{name}-ix",
                                      colour="green", incomplete=False, key_id="k1", wrapped_dek=b"dek",
                                      personal=PLANTED)

        def personal(check_id: int) -> bytes | None:
            c = store.credit_checks.c
            with read_tx(app.engine) as conn:
                value = conn.execute(select(c.personal).where(c.id == check_id)).scalar()
            return None if value is None else bytes(value)

        served = Serve(tmp_path, cfg)
        served.start()
        try:
            wait_for("serve's credit retention", lambda: personal(ids["old"]) is None)
            assert personal(ids["young"]) == PLANTED
            with read_tx(app.engine) as conn:
                old = store.get(conn, "demo", ids["old"])
            assert old is not None and (old["colour"], old["requested_by"], old["subject_key"]) == (
                "green", "alice", store.ERASED_KEY)  # the audit row stays
            assert served.proc is not None
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=60) == 0
            log = served.log.read_text()
            assert "retention.credit checks=1" in log and "Quetzalwurm" not in log
        finally:
            served.close()
    finally:
        app.close()
