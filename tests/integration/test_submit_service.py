"""The submit and claim operation use cases without SOAP: holds, release, one transaction, payload kept."""

from __future__ import annotations

import msgspec
import pytest

from gateway.bootstrap import App
from gateway.services import claim_ops, submit
from gateway.services.submit import Draft, Upload
from gateway.store import outbox as outbox_store
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.factories import make_claim


def _draft(ref: str, **changes: object) -> Draft:
    return Draft(reference=ref, claim=make_claim(ref, **changes))


def _count(app: App, table: str) -> int:
    with read_tx(app.engine) as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def test_hold_all_client_holds_unless_released(app: App) -> None:
    app.config.clients["demo"] = msgspec.structs.replace(app.config.clients["demo"], hold_all=True)
    held = submit.submit_claims(app, "demo", [_draft("R-1")])
    assert [(a.outcome, a.state) for a in held.results] == [("held", "held")]
    now = submit.submit_claims(app, "demo", [_draft("R-2")], release=True)
    assert [(a.outcome, a.state) for a in now.results] == [("accepted", "queued")]


def test_submission_keeps_the_raw_request_encrypted(app: App) -> None:
    raw = b"<Envelope>raw request</Envelope>"
    r = submit.submit_claims(app, "demo", [_draft("R-1")], raw=raw)
    with read_tx(app.engine) as conn:
        sub = sub_store.get(conn, r.submission)
        assert (sub["channel"], sub["status"], sub["accepted"]) == ("soap", "completed", 1)
        assert b"".join(sub_store.read_payload(conn, app.cipher, sub["id"])) == raw
        stored = conn.exec_driver_sql("SELECT data FROM submission_payloads").scalar_one()
    assert raw not in bytes(stored)


def test_everything_or_nothing(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox_store, "enqueue", broken)
    doc = Upload(name="a.pdf", media_type="application/pdf", kind="invoice", content=b"%PDF")
    with pytest.raises(RuntimeError):
        submit.submit_claims(app, "demo", [Draft(reference="R-1", claim=make_claim("R-1"), uploads=[doc])])
    assert [_count(app, t) for t in ("submissions", "claims", "claim_events", "documents")] == [0, 0, 0, 0]


def test_claim_without_partner_is_held_and_skipped_by_release(app: App) -> None:
    app.config.routing.clear()
    app.config.clients["demo"] = msgspec.structs.replace(app.config.clients["demo"], default_partner=None)
    app.router.__init__(app.config)  # type: ignore[misc]
    r = submit.submit_claims(app, "demo", [_draft("R-1")])
    (a,) = r.results
    assert a.state == "held" and [f.code for f in a.findings] == ["no_partner"]
    assert a.claim_id is not None
    run = claim_ops.release(app, "demo", claim_ids=[a.claim_id])
    assert run.released == [] and run.skipped[0][0] == a.claim_id


def test_duplicate_inside_one_request_answers_the_first(app: App) -> None:
    r = submit.submit_claims(app, "demo", [_draft("R-1"), _draft("R-1")])
    first, second = r.results
    assert second.existing and second.claim_id == first.claim_id
    assert _count(app, "claims") == 1


def test_change_feed_settles_on_postgresql_only(app: App) -> None:
    from gateway.services import claim_queries

    submit.submit_claims(app, "demo", [_draft("R-1")])
    app.config.soap = msgspec.structs.replace(app.config.soap, changes_settle_seconds=3600)
    events, cursor, more = claim_queries.changes(app, "demo", 0, 10)
    if app.engine.dialect.name == "postgresql":  # ids are assigned before commit there: wait for late commits
        assert (events, cursor, more) == ([], 0, False)
    else:  # SQLite commits in id order
        assert [e["kind"] for e in events] == ["intake"] and cursor == events[0]["id"]
    app.config.soap = msgspec.structs.replace(app.config.soap, changes_settle_seconds=0)
    assert [e["kind"] for e in claim_queries.changes(app, "demo", 0, 10)[0]] == ["intake"]
