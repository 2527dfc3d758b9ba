"""The store on SQLite and PostgreSQL: append-only claims, checked transitions, encrypted PII, leases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from gateway.bootstrap import App
from gateway.domain.lifecycle import Actor, State
from gateway.errors import IllegalTransition
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store import submissions as sub_store
from gateway.store.claims import NewClaim
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import claim_events
from tests.factories import make_claim


def seed(app: App, n: int = 3, state: State = State.QUEUED) -> list[int]:
    with write_tx(app.engine) as conn:
        sub = sub_store.create(conn, client_id="demo", channel="cli", filename="f.csv", sha256="ab" * 32,
                               size=1, dedupe=False)
        assert sub is not None
        return claim_store.insert_new(conn, app.cipher, sub["id"],
                                      [NewClaim(claim=make_claim(f"R-{i}"), state=state, source_row=i + 2)
                                       for i in range(n)])


def event_count(app: App) -> int:
    with read_tx(app.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(claim_events)).scalar_one())


def test_claims_round_trip_with_personal_data_encrypted(app: App) -> None:
    [cid] = seed(app, 1)
    with read_tx(app.engine) as conn:
        row = claim_store.get_row(conn, cid)
        assert claim_store.decode(row, app.cipher) == make_claim("R-0")
        raw = conn.execute(text("SELECT * FROM claims")).fetchone()
    flat = repr(raw).encode()
    for secret in ("Müller", "Mueller", "Hauptstraße", "50667", "DE89370400440532013000", "1980-05-17",
                   "j.mueller"):
        assert secret.encode() not in flat and secret.encode("unicode_escape") not in flat, secret
    assert row["principal_minor"] == 123456 and row["open_minor"] == 123956


@pytest.mark.parametrize("table", ["claims", "claim_events"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET client_id = 'x'", "DELETE FROM {t}"])
def test_database_refuses_to_rewrite_or_delete(app: App, table: str, statement: str) -> None:
    seed(app, 2)
    before = event_count(app)
    with pytest.raises(DBAPIError, match="append-only"):
        with write_tx(app.engine) as conn:
            conn.execute(text(statement.format(t=table)))
    assert event_count(app) == before
    with read_tx(app.engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM claims WHERE client_id = 'demo'")).scalar_one() == 2


def test_store_api_has_no_way_to_change_or_delete_claims() -> None:
    public = [n for n in dir(claim_store) if not n.startswith("_")]
    assert not [n for n in public if any(w in n.lower() for w in ("update", "delete", "remove", "edit", "set_"))]


def test_state_is_derived_from_events(app: App) -> None:
    ids = seed(app, 2)
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, ids[:1], State.DELIVERING, Actor.SYSTEM)
    with read_tx(app.engine) as conn:
        assert claim_store.current_states(conn, ids) == {ids[0]: State.DELIVERING, ids[1]: State.QUEUED}
        hist = claim_store.history(conn, ids[0])
    assert [(e["from_state"], e["state"]) for e in hist] == [("received", "queued"), ("queued", "delivering")]


def test_illegal_transition_writes_nothing_even_in_a_batch(app: App) -> None:
    ids = seed(app, 3)
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, ids[2:], State.DELIVERING, Actor.SYSTEM)
    before = event_count(app)
    # ids[0], ids[1] may go queued -> cancelled_by_client; ids[2] is delivering and may not.
    with pytest.raises(IllegalTransition, match=f"claim {ids[2]}: illegal transition delivering"):
        with write_tx(app.engine) as conn:
            claim_store.transition(conn, ids, State.CANCELLED_BY_CLIENT, Actor.CLIENT)
    with pytest.raises(IllegalTransition, match="only partner, system may do that"):
        with write_tx(app.engine) as conn:
            claim_store.transition(conn, ids[2:], State.HANDED_OVER, Actor.CLIENT)
    assert event_count(app) == before
    with read_tx(app.engine) as conn:
        assert set(claim_store.current_states(conn, ids[:2]).values()) == {State.QUEUED}


def test_same_file_is_recognised_per_client(app: App) -> None:
    with write_tx(app.engine) as conn:
        first = sub_store.create(conn, client_id="demo", channel="cli", filename="a", sha256="cd" * 32, size=1,
                                 dedupe=True)
        again = sub_store.create(conn, client_id="demo", channel="cli", filename="b", sha256="cd" * 32, size=1,
                                 dedupe=True)
        other = sub_store.create(conn, client_id="other", channel="cli", filename="a", sha256="cd" * 32, size=1,
                                 dedupe=True)
    assert first is not None and again is None and other is not None


def test_outbox_lease_is_exclusive_and_expires(app: App) -> None:
    now = app.now()
    with write_tx(app.engine) as conn:
        outbox_store.enqueue(conn, key="k1", client_id="demo", partner_id="p", operation="deliver_batch",
                             payload={"claim_ids": [1]}, now=now)
    with write_tx(app.engine) as conn:
        first = outbox_store.lease(conn, "w1", 60, now=now)
    with write_tx(app.engine) as conn:
        assert outbox_store.lease(conn, "w2", 60, now=now) is None
    later = now + timedelta(seconds=61)
    with write_tx(app.engine) as conn:
        second = outbox_store.lease(conn, "w2", 60, now=later)
    assert first is not None and second is not None and second.attempts == 2
    with write_tx(app.engine) as conn:  # the first worker lost its lease: it may not settle the row
        assert not outbox_store.complete(conn, first, {"x": 1}, now=later)
        assert outbox_store.complete(conn, second, {"x": 2}, now=later)
    with read_tx(app.engine) as conn:
        row = outbox_store.get(conn, second.id)
    assert row["status"] == "done" and row["lease_owner"] == "w2"
