"""Free-text reasons in the history are sealed under the claim's key and go with its erasure; an erasure's own
reason may not name the debtor (store/event_notes.py, domain/personal_text.py). SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from gateway.bootstrap import App
from gateway.domain.lifecycle import Actor, State
from gateway.services import claim_ops, claim_queries, erasure, status_files
from gateway.services.claim_ops import InvalidRequest
from gateway.store import claims as claim_store
from gateway.store.db import _alembic_config, read_tx, upgrade, write_tx
from gateway.store.keys_store import claim_keys
from gateway.store.schema import claim_events, outbox
from tests.integration.test_keys_erasure import seed

PLANT = "Frau Zyxwvuts hat am Schalter bezahlt"  # a name no other value of the tests carries


def stored_text(app: App) -> str:
    """Every event's data and every outbox payload as stored."""
    with read_tx(app.engine) as conn:
        events = conn.execute(select(claim_events.c.data)).scalars().all()
        payloads = conn.execute(select(outbox.c.payload)).scalars().all()
    return "\n".join(str(v) for v in [*events, *payloads] if v)


def reasons(app: App, cid: int, kind: str) -> list[dict[str, object]]:
    return [e["data"] for e in claim_queries.history(app, "demo", cid) if e["kind"] == kind]


def test_a_cancel_reason_is_sealed_readable_while_the_claim_lives_and_gone_with_its_erasure(app: App) -> None:
    queued, at_partner = seed(app, ["S-1", "S-2"], partner="demo-agency")
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, [at_partner], State.HANDED_OVER, Actor.PARTNER)
    assert claim_ops.cancel(app, "demo", queued, PLANT).state == "cancelled_by_client"
    assert claim_ops.cancel(app, "demo", at_partner, PLANT).forwarded
    assert "Zyxwvuts" not in stored_text(app)  # not in the history, not in the partner's request
    assert [d["reason"] for d in reasons(app, queued, "cancelled")] == [PLANT]
    assert [d["reason"] for d in reasons(app, at_partner, "cancel_requested")] == [PLANT]
    app.config.soap.changes_settle_seconds = 0  # PostgreSQL's feed waits for commits to settle: none are open
    events, _, _ = claim_queries.changes(app, "demo", 0, 100)  # what GetChanges answers
    assert [e["data"]["reason"] for e in events if e["kind"] in ("cancelled", "cancel_requested")] == [PLANT] * 2

    erasure.erase(app, [queued, at_partner], "Ticket DSR-2026-0042", by="tester")
    for cid, kind in ((queued, "cancelled"), (at_partner, "cancel_requested")):
        [data] = reasons(app, cid, kind)
        assert "reason" not in data and data["reason_erased"] is True
    # A request made after the erasure has nothing to seal under: the text is not kept at all.
    with write_tx(app.engine) as conn:
        claim_store.transition(conn, [at_partner], State.IN_PROGRESS, Actor.PARTNER)
    claim_ops.cancel(app, "demo", at_partner, "Zyxwvuts again")
    assert "Zyxwvuts" not in stored_text(app)
    assert reasons(app, at_partner, "cancel_requested")[-1] == {"reason_withheld": True}


def test_a_release_reason_is_sealed_per_claim(app: App) -> None:
    ids = seed(app, ["H-1", "H-2"], state=State.HELD, partner="demo-agency")
    result = claim_ops.release(app, "demo", claim_ids=ids, reason=PLANT)
    assert result.released == ids
    assert "Zyxwvuts" not in stored_text(app)
    for cid in ids:
        [data] = reasons(app, cid, "released")
        assert data["reason"] == PLANT and data["run"] == result.run


def test_the_status_file_says_the_reason_the_client_wrote(app: App) -> None:
    app.config.clients["demo"].sftp.status_files = True
    [cid] = seed(app, ["F-1"])
    claim_ops.cancel(app, "demo", cid, PLANT)
    [written] = status_files.write_due_status_files(app, force=True)
    text = Path(written).read_text(encoding="utf-8")
    assert "Zyxwvuts" in text and "reason_sealed" not in text


@pytest.mark.parametrize("reason, field", [
    ("Herr Müller bat um Löschung", "last name"),
    ("Anfrage von JÜRGEN per Post", "first name"),
    ("per Mail von j.mueller@example.org", "e-mail address"),
    ("Konto DE89 3704 0044 0532 0130 00", "IBAN"),
    ("geboren am 17.05.1980, Art. 17", "date of birth"),
    ("wohnt Hauptstraße 12a", "street"),
])
def test_an_erasure_reason_that_names_the_debtor_is_refused_and_nothing_is_erased(app: App, reason: str,
                                                                                   field: str) -> None:
    [cid] = seed(app, ["D-1"])
    with pytest.raises(InvalidRequest) as caught:
        erasure.erase(app, [cid], reason, by="tester")
    message = str(caught.value)
    assert f"debtor's {field}" in message and "ticket number" in message
    for value in ("Müller", "Jürgen", "mueller", "DE89", "1980", "Hauptstraße"):
        assert value.casefold() not in message.casefold()  # it says which field, never the value
    with read_tx(app.engine) as conn:
        assert conn.execute(select(claim_keys.c.claim_id).where(claim_keys.c.claim_id == cid)).first() is not None
    assert erasure.erase(app, [cid], "Art. 17 DSGVO, Ticket 4711", by="tester").erased == [cid]


def test_migration_0018_seals_the_reasons_stored_before_and_drops_those_of_erased_claims(app: App) -> None:
    command.downgrade(_alembic_config(app.engine), "0017")
    kept, gone = seed(app, ["M-1", "M-2"])
    with write_tx(app.engine) as conn:  # as the code before 0018 wrote them: plain
        for cid in (kept, gone):
            claim_store.transition(conn, [cid], State.HANDED_OVER, Actor.PARTNER)
            claim_store.annotate(conn, cid, Actor.CLIENT, "cancel_requested", {"reason": PLANT})
            conn.execute(outbox.insert().values(
                idempotency_key=f"cancel:{cid}:1", client_id="demo", partner_id="demo-agency", operation="cancel",
                payload=json.dumps({"claim_id": cid, "reason": PLANT}), status="done", attempts=1,
                available_at=app.now(), created_at=app.now()))
        conn.execute(claim_keys.delete().where(claim_keys.c.claim_id == gone))  # erased under the old code
    assert stored_text(app).count("Zyxwvuts") == 4
    upgrade(app.engine)
    assert "Zyxwvuts" not in stored_text(app)
    assert reasons(app, kept, "cancel_requested")[0]["reason"] == PLANT
    assert reasons(app, gone, "cancel_requested")[0] == {"reason_withheld": True}
    with write_tx(app.engine) as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(claim_events.update().values(kind="x"))  # the triggers are back
