"""The operator's partners page: adapter, capabilities, last sync and error, backlog, health, supervisor tasks."""

from __future__ import annotations

import asyncio
import re

from gateway.entrypoints.supervisor import Supervisor
from gateway.errors import DeliveryError
from gateway.services.partner_updates import save_cursor
from gateway.store import outbox as outbox_store
from gateway.store.db import write_tx
from tests.integration.web.conftest import Console, claim_ids
from tests.integration.web.test_web_runs_operator import run_ref


def _row(page: str, partner: str) -> str:
    found = re.search(rf'<tr class="ph-[a-z_]+" id="partner-{re.escape(partner)}">.*?</tr>', page, re.S)
    assert found, partner
    return found.group(0)


def test_partners_page_shows_sync_errors_backlog_and_health(console: Console) -> None:
    app = console.app
    c = console.client("olga")
    row = _row(c.get("/operator/partners").text, "demo-agency")
    assert "directory" in row and "deliver" in row and "ph-overdue" in row and "noch nie" in row  # never pulled
    with write_tx(app.engine) as conn:
        save_cursor(conn, "demo-agency", None, 0, now=app.now())
    assert "ph-ok" in _row(c.get("/operator/partners").text, "demo-agency")
    with write_tx(app.engine) as conn:
        dead = outbox_store.enqueue_dead(conn, key="test:partners", client_id="demo", partner_id="demo-agency",
                                         operation="deliver_batch", payload={"claim_ids": []}, error="refused")
        save_cursor(conn, "demo-agency", None, 0, error="partner answered 503 (retryable)", now=app.now())
    page = c.get("/operator/partners").text
    row = _row(page, "demo-agency")
    assert "ph-failing" in row and "letzter Abruf fehlgeschlagen" in row and "partner answered 503" in row
    assert re.search(r'<a href="/operator/outbox\?status=dead">\d+</a>', row)
    assert "Nur im laufenden Gateway bekannt" in page  # no supervisor outside serve
    with write_tx(app.engine) as conn:  # the next pull succeeds; the dead letter still waits
        save_cursor(conn, "demo-agency", None, 0, now=app.now())
    row = _row(c.get("/operator/partners?lang=en").text, "demo-agency")
    assert "ph-dead_letters" in row and "dead letters waiting" in row
    token = console.csrf(c, "/operator/outbox")
    c.post(f"/operator/outbox/{dead}/retry", data={"csrf": token})


def test_partners_page_shows_the_supervisors_delivery_tasks(console: Console) -> None:
    sup = Supervisor(asyncio.Event())
    sup.report("partner_sync", DeliveryError("demo-agency: connection refused", retryable=True))
    sup.report("inbox", RuntimeError("not a partner task"))
    console.web.state.supervisor = sup
    page = console.client("olga").get("/operator/partners").text
    tasks = page.split("Hintergrundaufgaben")[1]
    assert "partner_sync" in tasks and "connection refused" in tasks and "inbox" not in tasks


def test_claims_waiting_for_their_handover_are_counted_per_partner(console: Console) -> None:
    anna = console.client("anna")
    ref = run_ref(console, "demo")
    minor = claim_ids(console.app, "demo")["RE-2025-0004"]  # held: nothing waits for the partner yet
    row = _row(console.client("olga").get("/operator/partners").text, "demo-agency")
    assert '<a href="/operator/claims?state=queued">' not in row
    anna.post(f"/runs/{ref}/release", data={"csrf": console.csrf(anna, f"/runs/{ref}"), "claim": [str(minor)]})
    row = _row(console.client("olga").get("/operator/partners").text, "demo-agency")
    assert '<a href="/operator/claims?state=queued">1</a>' in row  # released, no dispatcher running: queued


def test_clients_get_404_on_the_partners_page(console: Console) -> None:
    for login in ("anna", "vera"):
        assert console.client(login).get("/operator/partners").status_code == 404
    assert console.client().get("/operator/partners").headers["location"] == "/login"


def test_every_health_verdict_has_its_text() -> None:
    from gateway.entrypoints.web.texts import TEXTS
    verdicts = {"ok", "failing", "overdue", "dead_letters", "unknown_adapter"}  # partner_overview's verdicts
    assert {f"health_{v}" for v in verdicts} <= set(TEXTS)


def test_a_partner_whose_rows_all_wait_shows_until_when(console: Console) -> None:
    """A partner that asked the gateway to wait (429/503 with Retry-After, kept in its rows' available_at) or whose
    rows back off: the page and `gateway status` say until when, not only "pending 300"."""
    from datetime import timedelta

    from gateway.services.status_report import gateway_status

    app = console.app
    with write_tx(app.engine) as conn:
        outbox_store.enqueue(conn, key="test:waiting", client_id="demo", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": []}, now=app.now())
    assert [p["next_try_at"] for p in gateway_status(app)["partners"] if p["partner"] == "demo-agency"] == [None]
    until = app.now() + timedelta(minutes=30)
    with write_tx(app.engine) as conn:
        assert outbox_store.hold_partner(conn, "demo-agency", until, "waiting: partner asked to wait") >= 1
    [doc] = [p for p in gateway_status(app)["partners"] if p["partner"] == "demo-agency"]
    assert doc["next_try_at"] is not None and abs((doc["next_try_at"] - until).total_seconds()) < 1
    row = _row(console.client("olga").get("/operator/partners?lang=en").text, "demo-agency")
    assert "waiting until" in row
