"""A large page of partner updates is applied in short transactions: the database's write lock is not held
for the whole page, and a stop between two of them loses nothing and applies nothing twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, func, select

from adapters.base import PartnerUpdate, encode_updates
from adapters.statusfiles import STATUS_DIR, status_name
from gateway.bootstrap import App
from gateway.errors import Interrupted
from gateway.services.dispatch import Dispatcher, open_adapter
from gateway.services.ingest import ingest_file
from gateway.services.partner_sync import APPLY_CHUNK, sync_partner
from gateway.services.partner_updates import get_cursor
from gateway.store import claims as claim_store
from gateway.store.db import read_tx
from gateway.store.schema import partner_updates
from tests.conftest import ROOT

P = "demo-agency"


def _stored(app: App) -> int:
    with read_tx(app.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(partner_updates)).scalar_one())


def handed_over_with_a_page_of_statuses(app: App, n: int) -> list[int]:
    """The demo file delivered to the directory partner, and ``n`` status updates about its claims waiting in one
    status file (one page); returns the claims handed over."""
    app.config.partners[P].status_map.update({"BEARB": "in_progress:pre_court"})
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    worker = Dispatcher(app, owner="t")
    worker.drain()
    worker.close()
    with read_tx(app.engine) as conn:
        ids = sorted(r["id"] for r in claim_store.listing(conn, client_id="demo", state="handed_over"))
    updates = [PartnerUpdate(update_id=f"u-{i}", claim_id=ids[i % len(ids)], kind="status", code="BEARB",
                             partner_reference=f"AZ-{ids[i % len(ids)]}") for i in range(n)]
    adapter = open_adapter(app, P)
    folder = adapter.path / STATUS_DIR  # type: ignore[attr-defined]
    adapter.close()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / status_name(1, n)).write_bytes(encode_updates(updates))
    return ids


def test_a_page_is_applied_in_chunks_and_a_stop_between_them_resumes_without_loss(app: App) -> None:
    n = 2 * APPLY_CHUNK + 200
    handed_over_with_a_page_of_statuses(app, n)

    commits: list[int] = []

    def stop_after_the_first_chunk(conn: Any) -> None:
        commits.append(1)
        if len(commits) == 1:
            app.stopping.set()  # as SIGTERM does: the sync stops at its next update

    event.listen(app.engine, "commit", stop_after_the_first_chunk)
    try:
        try:
            sync_partner(app, P)
        except Interrupted:
            pass
    finally:
        event.remove(app.engine, "commit", stop_after_the_first_chunk)
        app.stopping.clear()
    assert _stored(app) == APPLY_CHUNK  # the first chunk stands; the rest waits for the next run
    with read_tx(app.engine) as conn:
        assert get_cursor(conn, P) is None  # the cursor moves only with the page's last chunk

    result = sync_partner(app, P)
    assert result.counts.get("duplicate") == APPLY_CHUNK
    assert sum(v for k, v in result.counts.items() if k != "duplicate") == n - APPLY_CHUNK
    assert _stored(app) == n
    with read_tx(app.engine) as conn:
        assert get_cursor(conn, P) == status_name(1, n)
