"""The current-state projection and the case account: written with every event, equal to a rebuild from the log."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from alembic import command
from sqlalchemy import delete, inspect, select, update

from adapters.base import PartnerUpdate
from gateway.bootstrap import App
from gateway.services import claim_ops, claim_queries, projection_ops
from gateway.services.claim_ops import InvalidRequest
from gateway.services.dispatch import Dispatcher
from gateway.services.partner_updates import apply_updates
from gateway.services.submit import Draft, submit_claims
from gateway.store import claims as claim_store
from gateway.store.claim_search import ClaimFilter
from gateway.store.db import _alembic_config, read_tx, upgrade, write_tx
from gateway.store.schema import claim_current
from tests.factories import make_claim

P = "demo-agency"
DAY = date(2025, 6, 2)


@pytest.fixture
def handed(app: App) -> list[int]:
    """Four claims of 125.50 EUR at the partner, and the partner's codes."""
    app.config.partners[P].status_map.update({"BEARB": "in_progress:pre_court", "BEZ": "closed_paid",
                                              "UNEIN": "closed_uncollectible", "AUSZ": "account:payout"})
    drafts = [Draft(reference=f"P-{i}", claim=make_claim(f"P-{i}", principal_amount=Decimal("125.50"), fees=[]))
              for i in range(4)]
    r = submit_claims(app, "demo", drafts, release=True)
    d = Dispatcher(app, owner="t")
    d.drain()
    d.close()
    ids = sorted(a.claim_id for a in r.results if a.claim_id is not None)
    assert [claim_queries.get_claim(app, "demo", c).state for c in ids] == ["handed_over"] * 4
    return ids


def up(n: int, claim: int, kind: str = "status", **kw: Any) -> PartnerUpdate:
    return PartnerUpdate(update_id=f"u-{n}", claim_id=claim, kind=kind, partner_reference=f"AZ-{claim}", **kw)


def rows(app: App) -> dict[int, dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return {r["claim_id"]: dict(r) for r in conn.execute(select(claim_current)).mappings()}


def test_direct_and_agency_payment_then_paid_leaves_nothing_open(app: App, handed: list[int]) -> None:
    a, b = handed[0], handed[1]
    assert claim_ops.report_payment(app, "demo", a, Decimal("50.00"), DAY).event_id
    assert claim_queries.get_claim(app, "demo", a).account.open == Decimal("75.50")
    got = apply_updates(app, P, [up(1, a, "payment", amount="100.00", currency="EUR"), up(2, a, code="BEZ")])
    assert got.counts == {"recorded": 1, "applied": 1}
    acc = claim_queries.get_claim(app, "demo", a).account
    assert (acc.open, acc.overpaid, acc.paid_direct, acc.paid_agency, acc.written_off) == (
        Decimal("0.00"), Decimal("24.50"), Decimal("50.00"), Decimal("100.00"), Decimal("0.00"))
    assert (acc.partner_file_number, acc.closing_reason) == (f"AZ-{a}", "BEZ")
    # Less money than owed, costs added, a payout, then "paid": the rest is written off, open is 0.
    apply_updates(app, P, [up(3, b, code="BEARB"), up(4, b, "costs", amount="20.00"),
                           up(5, b, "payment", amount="60.00"), up(6, b, code="AUSZ", amount="55.00"),
                           up(7, b, "payout", amount="5.00")])
    acc = claim_queries.get_claim(app, "demo", b).account
    assert (acc.stage, acc.agency_costs, acc.paid_agency, acc.payouts, acc.open) == (
        "pre_court", Decimal("20.00"), Decimal("60.00"), Decimal("60.00"), Decimal("85.50"))
    apply_updates(app, P, [up(8, b, code="BEZ")])
    acc = claim_queries.get_claim(app, "demo", b).account
    assert (acc.open, acc.written_off, acc.overpaid) == (Decimal("0.00"), Decimal("85.50"), Decimal("0.00"))
    assert apply_updates(app, P, [up(9, b, "payout", amount="1.001")]).counts == {"invalid_amount": 1}


def test_direct_payment_above_open_is_refused_unless_declared(app: App, handed: list[int]) -> None:
    c = handed[2]
    before = rows(app)[c]
    with pytest.raises(InvalidRequest, match=r"exceeds the open amount of 125.50 EUR"):
        claim_ops.report_payment(app, "demo", c, Decimal("100000"), DAY)
    with read_tx(app.engine) as conn:
        assert not [e for e in claim_store.history(conn, c) if e["kind"] == "payment_reported"]
    assert rows(app)[c] == before
    claim_ops.report_payment(app, "demo", c, Decimal("125.50"), DAY)  # exactly the open amount is fine
    with pytest.raises(InvalidRequest, match="exceeds the open amount of 0.00 EUR"):
        claim_ops.report_payment(app, "demo", c, Decimal("0.01"), DAY)
    claim_ops.report_payment(app, "demo", c, Decimal("10.00"), DAY, overpayment=True)
    acc = claim_queries.get_claim(app, "demo", c).account
    assert (acc.open, acc.overpaid, acc.paid_direct) == (Decimal("0.00"), Decimal("10.00"), Decimal("135.50"))


def test_projection_equals_a_rebuild_from_the_events(app: App, handed: list[int]) -> None:
    a, b, c, d = handed
    apply_updates(app, P, [up(1, a, code="BEARB"), up(2, a, "payment", amount="25.00"), up(3, b, code="UNEIN"),
                           up(4, c, "message", message_id="m1", text="Rückfrage"), up(5, d, code="BEARB")])
    claim_ops.report_payment(app, "demo", a, Decimal("0.50"), DAY)
    claim_ops.set_labels(app, "demo", b, ["x"])
    claim_ops.cancel(app, "demo", d, "selbst geklärt")
    projection_ops.mark_seen(app, "demo", [a])
    live = rows(app)
    assert projection_ops.rebuild_projection(app).__dict__ == {"claims": 4, "events": sum(
        len(claim_queries.history(app, "demo", x)) for x in handed), "added": 0, "changed": 0, "unchanged": 4, "removed": 0}
    with write_tx(app.engine) as conn:  # damage it: a wrong state and amount, a lost row, a row of no claim
        conn.execute(update(claim_current).where(claim_current.c.claim_id == a).values(state="held", open_minor=1))
        conn.execute(delete(claim_current).where(claim_current.c.claim_id == b))
        stray = dict(conn.execute(select(claim_current).where(claim_current.c.claim_id == c)).mappings().one())
        conn.execute(claim_current.insert().values({**stray, "claim_id": 10**9}))
    counts = projection_ops.rebuild_projection(app)
    assert (counts.added, counts.changed, counts.unchanged, counts.removed) == (1, 1, 2, 1)
    got = rows(app)
    assert {k: v for k, v in got[a].items() if v != live[a][k]} == {}
    assert got == live  # including the read mark of a
    assert projection_ops.rebuild_projection(app).unchanged == 4
    # The migration's backfill is the same fold: down to 0007 and up again gives the same rows, unread.
    command.downgrade(_alembic_config(app.engine), "0007")
    assert "claim_current" not in inspect(app.engine).get_table_names()
    upgrade(app.engine)
    again = rows(app)
    assert {k: v for k, v in again[a].items() if v != live[a][k]} == {"seen_event_id": 0}
    assert again == {k: {**v, "seen_event_id": 0} for k, v in live.items()}


def test_side_tables_lose_their_foreign_keys_and_get_them_back_on_downgrade(app: App, handed: list[int]) -> None:
    """Migration 0014 on both databases: the derived side tables drop the key to claims, the event log keeps
    its own, the rows stay; a downgrade restores the keys (SQLite: through its edited table definitions)."""
    side = ("claim_current", "claim_keys", "claim_fingerprints")

    def keys() -> dict[str, list[str]]:
        look = inspect(app.engine)
        return {t: sorted(fk["referred_table"] for fk in look.get_foreign_keys(t)) for t in (*side, "claim_events")}

    def counts() -> dict[str, int]:
        with read_tx(app.engine) as conn:
            return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in side}

    before = counts()
    assert before["claim_current"] == before["claim_keys"] == 4
    assert keys() == {"claim_current": [], "claim_keys": [], "claim_fingerprints": [], "claim_events": ["claims"]}
    command.downgrade(_alembic_config(app.engine), "0013")
    assert keys() == {t: ["claims"] for t in (*side, "claim_events")}
    assert counts() == before
    if app.engine.dialect.name == "sqlite":  # the restored key is enforced again
        with pytest.raises(Exception, match="FOREIGN KEY"), write_tx(app.engine) as conn:
            conn.exec_driver_sql("INSERT INTO claim_fingerprints (claim_id, fingerprint) VALUES (999999999, 'x')")
    upgrade(app.engine)
    assert keys()["claim_fingerprints"] == [] and counts() == before
    with write_tx(app.engine) as conn:  # a fresh connection reads the edited definition
        problems = [r[0] for r in conn.exec_driver_sql(
            "PRAGMA integrity_check" if app.engine.dialect.name == "sqlite" else "SELECT 'ok'").all()]
    assert problems == ["ok"]


def test_lists_by_state_and_unread_marks(app: App, handed: list[int]) -> None:
    a, b, c, d = handed
    assert projection_ops.mark_seen(app, "demo", None) == 4  # handed over: news until seen
    apply_updates(app, P, [up(1, a, code="BEARB"), up(2, b, code="BEARB"), up(3, c, code="BEZ")])

    def page(**kw: Any) -> tuple[list[int], int]:
        found, total, exact = claim_queries.list_claims(app, "demo", ClaimFilter(**kw))
        assert exact
        return [r["claim_id"] for r in found], total

    assert page(states=["in_progress"]) == ([b, a], 2)  # newest change first
    assert page(states=["in_progress"], sort="claim_id", descending=False, limit=1) == ([a], 2)
    assert page(states=["closed_paid", "handed_over"], sort="claim_id", descending=False) == ([c, d], 2)
    assert page(states=["in_progress"], sort="due_date", text="P-1") == ([b], 1)
    # What the partner changed is unread; what the client did itself is not news to it.
    assert page(unread=True, sort="claim_id", descending=False) == ([a, b, c], 3)
    assert projection_ops.mark_seen(app, "demo", [a, b, 10**9]) == 2
    assert projection_ops.mark_seen(app, "other", [c]) == 0  # another client's claim stays unread
    claim_ops.report_payment(app, "demo", a, Decimal("1.00"), DAY)
    assert page(unread=True) == ([c], 1)
    listed = claim_queries.list_claims(app, "demo", ClaimFilter(sort="claim_id", descending=False))[0]
    assert [bool(r["unread"]) for r in listed] == [False, False, True, False]
    app.config.soap = msgspec.structs.replace(app.config.soap, changes_settle_seconds=0)
    events, _, _ = claim_queries.changes(app, "demo", 0, 500)
    assert {e["claim_id"] for e in events if e["unread"]} == {c}
    apply_updates(app, P, [up(4, a, code="BEZ")])
    assert claim_queries.get_claim(app, "demo", a).account.unread
    assert projection_ops.mark_seen(app, "demo", None) == 2
    assert page(unread=True) == ([], 0)
