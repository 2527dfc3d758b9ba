"""After an outage, the first retry that gets through releases the partner's whole backlog at once."""

from __future__ import annotations

from gateway.bootstrap import App
from gateway.store import outbox as outbox_store
from gateway.store.db import write_tx


def test_release_waiting_makes_only_that_partners_backed_off_rows_due(app: App) -> None:
    now = app.now()
    with write_tx(app.engine) as conn:
        for i, partner in enumerate(["a", "a", "a", "b"]):
            outbox_store.enqueue(conn, key=f"k{i}", client_id="demo", partner_id=partner, operation="refresh",
                                 payload={"claim_id": i}, now=now)
        items = [outbox_store.lease(conn, "w", 60, now=now) for _ in range(4)]
        for item in items:
            assert item is not None
            assert outbox_store.fail(conn, item, "down", retry_in=3600, now=now)
        assert outbox_store.lease(conn, "w", 60, now=now) is None  # all waiting out their backoff
        assert outbox_store.release_waiting(conn, "a", now=now) == 3
        due = [outbox_store.lease(conn, "w", 60, now=now) for _ in range(4)]
    assert sorted(i.partner_id for i in due if i is not None) == ["a", "a", "a"]
