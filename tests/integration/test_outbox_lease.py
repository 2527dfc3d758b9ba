"""Outbox leases with the statements built once: what a lease and a settle store, the partner filter (both databases)."""

from __future__ import annotations

from datetime import timedelta

from gateway.bootstrap import App
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx


def test_lease_and_complete_store_owner_deadline_attempts_and_receipt(app: App) -> None:
    now = app.now()
    with write_tx(app.engine) as conn:
        outbox_store.enqueue(conn, key="k1", client_id="demo", partner_id="p", operation="deliver_batch",
                             payload={"claim_ids": [1]}, now=now)
        item = outbox_store.lease(conn, "w1", 90, now=now)
    assert item is not None and item.attempts == 1 and item.lease_owner == "w1"
    with read_tx(app.engine) as conn:
        row = outbox_store.get(conn, item.id)
    assert (row["status"], row["lease_owner"], row["attempts"]) == ("leased", "w1", 1)
    assert row["lease_until"] == now + timedelta(seconds=90)
    stale = outbox_store.OutboxItem(**{**{f: getattr(item, f) for f in item.__struct_fields__}, "attempts": 0})
    with write_tx(app.engine) as conn:
        assert not outbox_store.complete(conn, stale, {"x": 0}, now=now)  # another attempt's lease
        assert outbox_store.complete(conn, item, {"x": 1}, now=now + timedelta(seconds=5))
        assert not outbox_store.complete(conn, item, {"x": 2}, now=now)  # settled already
    with read_tx(app.engine) as conn:
        row = outbox_store.get(conn, item.id)
    assert row["status"] == "done" and row["lease_until"] is None and row["last_error"] is None
    assert outbox_store.loads(row["receipt"]) == {"x": 1} and row["done_at"] == now + timedelta(seconds=5)


def test_lease_for_some_partners_takes_only_theirs(app: App) -> None:
    now = app.now()
    with write_tx(app.engine) as conn:
        for key, partner, at in (("a", "p1", 0), ("b", "p2", 1), ("c", "p3", 2)):
            outbox_store.enqueue(conn, key=key, client_id="demo", partner_id=partner, operation="deliver_batch",
                                 payload={"claim_ids": [1]}, now=now + timedelta(seconds=at))
    later = now + timedelta(seconds=10)
    with write_tx(app.engine) as conn:
        first = outbox_store.lease(conn, "w", 60, now=later, partners=["p3", "p2"])
        second = outbox_store.lease(conn, "w", 60, now=later, partners=["p3", "p2"])
        third = outbox_store.lease(conn, "w", 60, now=later, partners=["p3", "p2"])
        rest = outbox_store.lease(conn, "w", 60, now=later)
    assert first is not None and second is not None and rest is not None and third is None
    assert (first.partner_id, second.partner_id, rest.partner_id) == ("p2", "p3", "p1")
