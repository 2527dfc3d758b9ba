"""Delivery's batch moves and reads write and return exactly what the general store path does (both databases).

Each move is run twice on the same claims, once through ``claims.transition`` and once through
``delivery_rows.advance``, each in a transaction that is rolled back; the stored rows (raw driver
values: SQLite's time texts too) must be the same, event ids compared by their place in the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, delete, update

from gateway.bootstrap import App
from gateway.domain.lifecycle import Actor, State
from gateway.errors import IllegalTransition
from gateway.services.ingest import ingest_file
from gateway.store import claims as claim_store
from gateway.store import delivery_rows
from gateway.store.db import read_tx, write_tx
from gateway.store.keys_store import claim_keys
from tests.conftest import ROOT

DEMO = ROOT / "examples" / "demo.csv"
# a whole second: SQLite stores ingest's time without microseconds, which the projection write used to add
WHOLE = datetime(2026, 11, 30, 9, 0, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 30, 9, 0, 1, 250_000, tzinfo=timezone.utc)


def _ids(app: App) -> list[int]:
    with read_tx(app.engine) as conn:
        return sorted(r["id"] for r in claim_store.listing(conn, client_id="demo"))


def _stored(conn: Connection, ids: list[int], first_event: int) -> tuple[list[Any], list[Any]]:
    marks = ", ".join(str(int(i)) for i in ids)
    events = [tuple(r) for r in conn.exec_driver_sql(
        f"SELECT * FROM claim_events WHERE claim_id IN ({marks}) AND id >= {first_event} ORDER BY id")]
    result = conn.exec_driver_sql(f"SELECT * FROM claim_current WHERE claim_id IN ({marks}) ORDER BY claim_id")
    names = list(result.keys())
    current = [dict(zip(names, r)) for r in result]
    # event ids by their place among this move's events (a PostgreSQL sequence does not roll back)
    place = {e[0]: f"e{n}" for n, e in enumerate(events)}
    events = [(place[e[0]], *e[1:]) for e in events]
    for row in current:
        for col in ("last_event_id", "changed_event_id"):
            row[col] = place.get(row[col], row[col])
    return events, current


def _both(app: App, ids: list[int], move: Callable[[Connection, bool], None]) -> None:
    """Run ``move`` the old way and the new way (each rolled back) and compare what they stored."""
    results = []
    for new in (False, True):
        conn_cm = app.engine.connect()
        with conn_cm as conn:
            tx = conn.begin()
            first = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM claim_events").scalar_one())
            move(conn, new)
            results.append(_stored(conn, ids, first))
            tx.rollback()
    assert results[0][0], "the move wrote no event"
    assert results[1] == results[0]


def _move(conn: Connection, new: bool, ids: list[int], to: State, actor: Actor, **kw: Any) -> None:
    if new:
        delivery_rows.advance(conn, ids, delivery_rows.lock(conn, ids), to, actor, **kw)
    else:
        claim_store.transition(conn, ids, to, actor, **kw)


@pytest.fixture
def queued(app: App, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(app, "now", lambda: WHOLE)
    ingest_file(app, DEMO, "demo")
    with read_tx(app.engine) as conn:
        states = claim_store.current_states(conn, _ids(app))
    return [c for c, s in sorted(states.items()) if s is State.QUEUED]


def test_each_delivery_move_stores_what_transition_stores(app: App, queued: list[int]) -> None:
    data = {"outbox": 7, "partner": "demo-agency"}
    _both(app, queued, lambda c, new: _move(c, new, queued, State.DELIVERING, Actor.SYSTEM,
                                            kind="delivery_started", data=data, now=LATER))
    with write_tx(app.engine) as conn:  # on to delivering for the moves after it
        claim_store.transition(conn, queued, State.DELIVERING, Actor.SYSTEM, kind="delivery_started", data=data,
                               now=LATER)
    # a receipt: one batch reference, file numbers for some claims only (the others keep the batch's)
    receipt = {"partner": "demo-agency", "partner_reference": "demo-agency:B-1.xml.p7m", "batch": "B-1",
               "outbox": 7}
    refs = {queued[0]: {"partner_reference": "AZ-1"}, queued[2]: {"partner_reference": "x" * 200}}
    _both(app, queued, lambda c, new: _move(c, new, queued, State.HANDED_OVER, Actor.SYSTEM, kind="receipt",
                                            data=receipt, per_claim=refs, now=LATER + timedelta(seconds=1)))
    # unsorted ids, a stage, and no partner reference at all
    shuffled = [queued[3], queued[0], queued[1]]
    _both(app, queued, lambda c, new: _move(c, new, shuffled, State.FAILED, Actor.SYSTEM, kind="delivery_failed",
                                            data={"outbox": 8, "stage": "s" * 40},
                                            per_claim={queued[0]: {"error": "could not render"}},
                                            now=LATER + timedelta(seconds=2)))
    # a claim named twice moves twice (the second event from the state the first left)
    _both(app, queued, lambda c, new: _move(c, new, [queued[1], queued[1]], State.HANDED_OVER, Actor.SYSTEM,
                                            kind="receipt", data=receipt, now=LATER + timedelta(seconds=3)))
    # the client's own action does not count as news for it (changed_event_id stays)
    _both(app, queued, lambda c, new: _move(c, new, queued[:2], State.HANDED_OVER, Actor.PARTNER, kind="receipt",
                                            data=None, now=LATER + timedelta(seconds=3)))


def test_moves_that_book_or_close_take_the_general_fold(app: App, queued: list[int]) -> None:
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, queued, State.DELIVERING, Actor.SYSTEM, kind="delivery_started", now=LATER)
        claim_store.transition(conn, queued, State.HANDED_OVER, Actor.SYSTEM, kind="receipt", now=LATER)
    _both(app, queued, lambda c, new: _move(c, new, queued[:2], State.CLOSED_PAID, Actor.PARTNER,
                                            kind="partner_status", data={"code": "PAID"}, now=LATER))


def test_an_illegal_move_writes_nothing_and_names_the_claim(app: App, queued: list[int]) -> None:
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, queued[1:], State.DELIVERING, Actor.SYSTEM, kind="delivery_started",
                               now=LATER)
    errors = []
    for new in (False, True):
        with app.engine.connect() as conn:
            tx = conn.begin()
            first = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM claim_events").scalar_one())
            with pytest.raises(IllegalTransition) as err:
                _move(conn, new, queued, State.HANDED_OVER, Actor.SYSTEM, kind="receipt", now=LATER)
            assert _stored(conn, queued, first)[0] == []
            errors.append(str(err.value))
            tx.rollback()
    assert errors[1] == errors[0] and str(queued[0]) in errors[0]


def test_lock_reads_state_client_currency_and_sandbox(app: App, queued: list[int]) -> None:
    with write_tx(app.engine) as conn:
        got = delivery_rows.lock(conn, [*queued, 999_999])
        states = claim_store.current_states(conn, queued)
    assert sorted(got) == sorted(queued)
    assert {c: State(f.state) for c, f in got.items()} == states
    assert {(f.client_id, f.claim_client_id, f.currency, f.sandbox) for f in got.values()} == {
        ("demo", "demo", "EUR", False)}


def test_claims_are_decoded_like_claims_decode(app: App, queued: list[int]) -> None:
    erased, tampered = queued[0], queued[1]
    with write_tx(app.engine) as conn:
        conn.execute(delete(claim_keys).where(claim_keys.c.claim_id == erased))
        conn.execute(update(claim_keys).where(claim_keys.c.claim_id == tampered).values(wrapped_dek=b"\0" * 60))
    ids = _ids(app)
    with read_tx(app.engine) as conn:
        stored = delivery_rows.fetch_claims(conn, list(reversed(ids)))
        rows = claim_store.rows_by_ids(conn, ids)
    got = list(delivery_rows.decode_each(app.cipher, stored))
    assert [r.id for r in got] == ids
    for row, raw, new in zip(rows, stored, got):
        assert delivery_rows.currency_of(raw) == row["currency"]
        try:
            old = claim_store.decode(row, app.cipher)
        except Exception as exc:  # noqa: BLE001 - compared with the new path's reason
            assert new.claim is None and new.error == f"claim {row['id']}: {type(exc).__name__}: {exc}"
            assert row["id"] == tampered
        else:
            assert new.error is None and new.claim == old
    assert got[ids.index(erased)].claim is not None
    assert got[ids.index(erased)].claim.debtor.last_name == "[erased]"  # type: ignore[union-attr]


def test_with_documents_names_the_claims_that_have_stored_documents(app: App, queued: list[int]) -> None:
    from gateway.store import documents as documents_store

    with write_tx(app.engine) as conn:
        for cid in (queued[1], queued[3]):
            documents_store.add_many(conn, app.cipher, [(cid, "demo", "a.pdf", "application/pdf", "invoice",
                                                         "ab" * 32, b"%PDF")])
    with read_tx(app.engine) as conn:
        assert delivery_rows.with_documents(conn, [*reversed(queued), 999_999]) == [queued[1], queued[3]]
        assert delivery_rows.with_documents(conn, []) == []
