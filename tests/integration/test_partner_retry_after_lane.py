"""A partner that answers 429/503 with ``Retry-After`` has asked the gateway, not one row, to wait: the node
sends it nothing more until then. Before, only the row that got the answer waited; the partner's lane went on
at once with its next row, so a rate-limited partner got one more request per pending row (a backlog of
batches and per-claim operations: hundreds) right after it had said when to come back."""

from __future__ import annotations

from pathlib import Path

from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import gateway_for, keys_template  # noqa: F401
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_partner_faults_2 import DEMO
from tests.integration.test_partner_hostile_http import _HostilePartner


def test_a_partners_retry_after_holds_its_other_rows_too(tmp_path: Path, db_url: str,
                                                         keys_template: Path) -> None:  # noqa: F811
    def behave(req: Request, conn: Conn) -> None:
        conn.answer(429, b'{"code": "RATE_LIMITED"}', {"Retry-After": "120"})

    second = tmp_path / "second.csv"
    second.write_bytes(DEMO.read_bytes().replace(b"RE-2025-", b"RE-2026-"))
    with HostileServer(behave) as server:
        with gateway_for(_HostilePartner(tmp_path, server.url), tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            ingest_file(app, second, "demo")
            with read_tx(app.engine) as conn:
                assert len([r for r in outbox_store.listing(conn) if r["status"] == "pending"]) == 2
            worker = Dispatcher(app, owner="w")
            assert worker.run_once()
            assert not worker.run_once()  # the other batch waits for the partner's 120 s too
            worker.close()
            with read_tx(app.engine) as conn:
                rows = [dict(r) for r in outbox_store.listing(conn)]
            assert sorted(r["attempts"] for r in rows) == [0, 1]
    assert len(server.requests) == 1
