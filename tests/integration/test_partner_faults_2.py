"""A collection agency's system misbehaving, against the real simulators: answers that are 2xx but wrong,
statuses about claims it never got, poison updates and status files, error texts that echo a debtor.

Each test injects the partner's behaviour into its real transport (the simulator's router, a status file
in the partner folder) and asserts on what a user would see: claim states, file numbers, outbox rows,
the partner's books, the sync row, and the logs at DEBUG.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.base import PartnerUpdate, encode_updates
from adapters.simulators.agency import ACCEPTED, WORKING
from gateway.bootstrap import App, build_app
from gateway.domain.lifecycle import State
from gateway.entrypoints.cli import main
from gateway.errors import DeliveryError, Unsupported
from gateway.services import claim_ops
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.partner_sync import sync_due, sync_partner
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from gateway.store.schema import claim_events, partner_sync, partner_updates
from tests.conftest import ROOT, write_config
from tests.contract.harness import CERT, PARTNER, Harness, claims_by_state
from tests.support import Clock

DEMO = ROOT / "examples" / "demo.csv"
PLANTED = "Zacharias Quuxbaum-Planted"  # what a partner's error text could say about a debtor

Route = Callable[[Any, str, Any, bytes], tuple[int, bytes, str]]


def _reroute(sim: Harness, wrap: Callable[[Route], Route]) -> None:
    """Put ``wrap`` around the simulator's router: the partner's answers pass through it on the real transport."""
    server = sim.sim._server  # type: ignore[attr-defined]
    server.route = wrap(server.route)


def _sent(app: App) -> list[int]:
    return sorted(c for s, ids in claims_by_state(app).items() if s is not State.HELD for c in ids)


def _outbox(app: App) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return [dict(r) for r in outbox_store.listing(conn)]


def _current(app: App, cid: int) -> dict[str, Any]:
    with read_tx(app.engine) as conn:
        return claim_store.current(conn, cid)


def _deliver(app: App) -> int:
    worker = Dispatcher(app, owner="w")
    try:
        return worker.drain()
    finally:
        worker.close()


def _everything_written(app: App) -> str:
    """Every error column and event the gateway keeps, as text (where a leaked value would show)."""
    with read_tx(app.engine) as conn:
        rows = [str(dict(r)) for r in outbox_store.listing(conn)]
        rows += [str(r) for r in conn.execute(claim_events.select())]
        rows += [str(r) for r in conn.execute(partner_sync.select())]
        rows += [str(r) for r in conn.execute(partner_updates.select())]
    return "\n".join(rows)


# -- create answers that are 2xx but do not say what was sent ---------------------------------------------

@pytest.mark.parametrize("sim", ["http", "soap"], indirect=True)
def test_an_answer_that_omits_a_claim_does_not_hand_it_over_unconfirmed(sim: Harness, gw: App) -> None:
    """The agency's create answer leaves one claim out (once). That claim must not be reported handed over on
    that answer: the attempt is repeated (the agency folds it by key) and every claim ends with its own file
    number, each a case once at the agency."""
    ingest_file(gw, DEMO, "demo")
    cut: list[str] = []

    def wrap(real: Route) -> Route:
        def route(handler: Any, method: str, url: Any, raw: bytes) -> tuple[int, bytes, str]:
            status, body, ctype = real(handler, method, url, raw)
            if not cut and method == "POST" and url.path == "/v1/claims":
                doc = json.loads(body)
                cut.append(str(doc["claims"].pop()["external_id"]))
                body = json.dumps(doc).encode()
            elif not cut and method == "POST" and b"CreateClaimsResponse" in body:
                last = body.rindex(b"<tns:result>")
                end = body.index(b"</tns:result>", last) + len(b"</tns:result>")
                cut.append(body[last:end].decode())
                body = body[:last] + body[end:]
            return status, body, ctype
        return route

    _reroute(sim, wrap)
    _deliver(gw)
    assert cut  # the partner did leave one out
    ids = _sent(gw)
    assert claims_by_state(gw).get(State.HANDED_OVER) == ids
    for cid in ids:
        assert _current(gw, cid)["partner_file_number"] == sim.agency.cases[cid].file_number
    assert sim.agency.duplicates() == {}
    assert [r["status"] for r in _outbox(gw)] == ["done"]


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_an_answer_naming_claims_never_sent_gives_them_nothing(sim: Harness, gw: App) -> None:
    """The agency's answer names a claim of the gateway's that was not in the batch (held, not for this
    partner): it gets no file number, no receipt, and the agency is not asked to release it."""
    ingest_file(gw, DEMO, "demo")
    held = claims_by_state(gw)[State.HELD][0]
    released: list[list[int]] = []

    def wrap(real: Route) -> Route:
        def route(handler: Any, method: str, url: Any, raw: bytes) -> tuple[int, bytes, str]:
            status, body, ctype = real(handler, method, url, raw)
            if method == "POST" and url.path == "/v1/claims":
                doc = json.loads(body)
                doc["claims"].append({"external_id": held, "file_number": "AZ-FOREIGN-1", "status": "draft"})
                body = json.dumps(doc).encode()
            if method == "POST" and url.path == "/v1/claims/release":
                released.append(json.loads(raw)["external_ids"])
            return status, body, ctype
        return route

    _reroute(sim, wrap)
    _deliver(gw)
    ids = _sent(gw)
    assert claims_by_state(gw).get(State.HANDED_OVER) == ids
    assert released == [ids]
    held_now = _current(gw, held)
    assert held_now["state"] == State.HELD.value and held_now["partner_file_number"] is None


@pytest.mark.parametrize("body", [b"", b"<html>maintenance</html>", b"[]", b'{"claims": "none"}'],
                         ids=["empty", "html", "list", "wrong-type"])
@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_malformed_success_answer_is_retried_not_dead_lettered(sim: Harness, gw: App, body: bytes) -> None:
    """A 200 whose body is empty, HTML or the wrong shape (a proxy's page, a half-deployed partner) says
    nothing about the claims: the attempt fails retryably with a clear error, the claims are not failed,
    and the next attempt hands them over, each a case once."""
    ingest_file(gw, DEMO, "demo")
    spoiled: list[bool] = []

    def wrap(real: Route) -> Route:
        def route(handler: Any, method: str, url: Any, raw: bytes) -> tuple[int, bytes, str]:
            status, answer, ctype = real(handler, method, url, raw)
            if method == "POST" and url.path == "/v1/claims" and len(spoiled) < 3:  # every in-call retry too
                spoiled.append(True)
                return 200, body, "text/html" if body.startswith(b"<") else "application/json"
            return status, answer, ctype
        return route

    _reroute(sim, wrap)
    worker = Dispatcher(gw, owner="w")
    assert worker.run_once()
    [row] = _outbox(gw)
    assert row["status"] == "pending", row["last_error"]
    assert "answer" in row["last_error"] and "POST /v1/claims" in row["last_error"]
    assert State.FAILED not in claims_by_state(gw)
    gw.now.advance(3600)  # type: ignore[attr-defined]
    worker.drain()
    worker.close()
    assert claims_by_state(gw).get(State.HANDED_OVER) == _sent(gw)
    assert sim.agency.duplicates() == {}


# -- error texts from the partner --------------------------------------------------------------------------

@pytest.mark.parametrize("sim", ["http", "soap"], indirect=True)
def test_a_partner_error_that_echoes_debtor_data_leaves_it_nowhere(sim: Harness, gw: App,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """An agency refuses a batch with an error text that repeats a debtor's name (HTTP 422 body, SOAP client
    fault). The row is dead with an error that names the partner, the call and the status, but the
    partner's free text reaches no error column, event or log line (DEBUG included)."""
    caplog.set_level(logging.DEBUG)
    ingest_file(gw, DEMO, "demo")

    def wrap(real: Route) -> Route:
        def route(handler: Any, method: str, url: Any, raw: bytes) -> tuple[int, bytes, str]:
            if method == "POST" and url.path == "/v1/claims":
                return 422, json.dumps({"code": "DEBTOR_INVALID",
                                        "error": f"debtor {PLANTED} has no valid address"}).encode(), "application/json"
            if method == "POST" and b"CreateClaims" in raw:
                fault = (f'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
                         f"<soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>debtor {PLANTED} "
                         f"has no valid address</faultstring></soap:Fault></soap:Body></soap:Envelope>")
                return 500, fault.encode(), "text/xml; charset=utf-8"
            return real(handler, method, url, raw)
        return route

    _reroute(sim, wrap)
    _deliver(gw)
    [row] = _outbox(gw)
    assert row["status"] == "dead"
    assert sim.partner()["adapter"] in ("http", "soap")
    assert ("HTTP 422" if sim.alias == "http" else "fault") in row["last_error"]
    assert set(claims_by_state(gw)) <= {State.FAILED, State.HELD}
    assert PLANTED not in _everything_written(gw)
    assert PLANTED not in caplog.text


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_an_unexpected_exception_in_an_adapter_keeps_its_text_out_of_the_error_column(
        sim: Harness, gw: App, caplog: pytest.LogCaptureFixture) -> None:
    """An adapter fails with an exception the gateway did not compose (a bug meeting a partner's odd answer),
    whose text carries a value it was handed. The row and the claims' events record its type and where it
    was raised, not its text."""
    caplog.set_level(logging.DEBUG)
    ingest_file(gw, DEMO, "demo")
    worker = Dispatcher(gw, owner="w")
    adapter = worker._adapter(PARTNER)

    def deliver(batch: Any) -> Any:
        raise ValueError(f"invalid literal for int() with base 10: {PLANTED!r}")

    adapter.deliver = deliver  # type: ignore[method-assign]
    assert worker.run_once()
    worker.close()
    [row] = _outbox(gw)
    assert row["status"] == "dead" and row["last_error"].startswith("ValueError at ")
    assert PLANTED not in _everything_written(gw) and PLANTED not in caplog.text


# -- statuses about claims the partner was never sent ------------------------------------------------------

def _status_file(sim: Harness, name: str, updates: list[PartnerUpdate] | bytes) -> None:
    folder = sim.folder.root / "status"  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(updates if isinstance(updates, bytes) else encode_updates(updates))


@pytest.mark.parametrize("sim", ["directory"], indirect=True)
def test_a_status_for_a_claim_never_sent_does_not_stop_its_delivery(sim: Harness, gw: App,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Before any batch left, the agency's status file speaks of claims routed to it (a typo in its
    claim id, a file meant for another creditor). A queued claim must not become handed over on that word:
    it was never sent, and taken as received it would never be sent. Held claims get no payment booked."""
    ingest_file(gw, DEMO, "demo")
    queued = claims_by_state(gw)[State.QUEUED]
    held = claims_by_state(gw)[State.HELD][0]
    _status_file(sim, "status-0000000001-0000000003.json", [
        PartnerUpdate(update_id="x-1", claim_id=queued[0], kind="status", code=WORKING, partner_reference="AZ-X-1"),
        PartnerUpdate(update_id="x-2", claim_id=queued[1], kind="status", code=ACCEPTED, partner_reference="AZ-X-2"),
        PartnerUpdate(update_id="x-3", claim_id=held, kind="payment", amount="10.00", currency="EUR",
                      date="2026-11-01")])
    assert main(["--config", str(gw.config.source), "partners", "sync", "--partner", PARTNER]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    [row] = [r for r in rows if r.startswith(PARTNER + " ")]
    starts = [header.index(name) for name in header.split()]  # cells are aligned under their column names
    table = {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, [*starts[1:], None])}
    assert (table["NOT_SENT"], table["APPLIED"], table["RECORDED"]) == ("3", "", "")
    assert claims_by_state(gw)[State.QUEUED] == queued
    assert _current(gw, queued[0])["partner_file_number"] is None
    assert _current(gw, held)["paid_agency_minor"] == 0
    _deliver(gw)
    sim.pump()
    assert sorted(sim.agency.cases) == queued  # every queued claim reached the agency
    assert claims_by_state(gw)[State.HANDED_OVER] == queued


# -- updates that cannot be stored as they are ---------------------------------------------------------------

def _delivered(sim: Harness, gw: App) -> list[int]:
    ingest_file(gw, DEMO, "demo")
    _deliver(gw)
    sim.pump()
    sync_partner(gw, PARTNER)  # the agency's receipts (ANGENOMMEN)
    return claims_by_state(gw)[State.HANDED_OVER]


@pytest.mark.parametrize("sim", ["directory"], indirect=True)
def test_an_update_the_store_cannot_hold_does_not_block_the_partners_other_updates(sim: Harness, gw: App) -> None:
    """One status file carries updates no column can hold (an amount of 10^30, a claim id beyond 64 bits, an
    update id or message id of hundreds of characters) between ordinary ones. The ordinary ones are applied;
    the others are counted as invalid and kept out, and the sync goes on to the next file, not stuck on this
    one for ever."""
    ids = _delivered(sim, gw)
    a, b = ids[0], ids[1]
    _status_file(sim, "status-9000000001-9000000001.json", [
        PartnerUpdate(update_id="p-1", claim_id=a, kind="status", code=WORKING),
        PartnerUpdate(update_id="p-2", claim_id=a, kind="payment", amount="1e30", currency="EUR", date="2026-11-02"),
        PartnerUpdate(update_id="p-3", claim_id=2 ** 64 + 7, kind="status", code=WORKING),
        PartnerUpdate(update_id="p-" + "9" * 400, claim_id=b, kind="status", code=WORKING),
        PartnerUpdate(update_id="p-5", claim_id=b, kind="message", message_id="m" * 400, text="Rückruf erbeten"),
        PartnerUpdate(update_id="p-6", claim_id=b, kind="payment", amount="12.50", currency="EUR", date="2026-11-02")])
    _status_file(sim, "status-9000000002-9000000002.json", [
        PartnerUpdate(update_id="p-7", claim_id=b, kind="status", code=WORKING)])
    result = sync_partner(gw, PARTNER)
    assert result.counts.get("applied") == 2 and result.counts.get("recorded") == 2
    assert result.counts.get("invalid_amount") == 1
    assert result.counts.get("invalid_update") == 2
    assert claims_by_state(gw)[State.IN_PROGRESS] == [a, b]
    assert _current(gw, b)["paid_agency_minor"] == 1250
    assert _current(gw, a)["paid_agency_minor"] == 0
    with read_tx(gw.engine) as conn:
        cursor = conn.execute(partner_sync.select()).mappings().one()
    assert cursor["cursor"] == "status-9000000002-9000000002.json" and cursor["last_error"] is None
    assert sync_partner(gw, PARTNER).total == 0


# -- status files half-written, broken or written again ------------------------------------------------------

@pytest.mark.parametrize("sim", ["directory", "sftp"], indirect=True)
def test_a_half_written_status_file_is_named_and_read_again_once_whole(sim: Harness, gw: App) -> None:
    """The agency writes a status file under its final name (no temp name) and the gateway reads it half
    written. Nothing of it or of the files after it is applied, the cursor stays, the sync row and the error
    name the file and what is wrong (no content); once the file is whole, both files apply, in order, once."""
    a, b = _delivered(sim, gw)[:2]
    whole = encode_updates([PartnerUpdate(update_id="h-1", claim_id=a, kind="status", code=WORKING),
                            PartnerUpdate(update_id="h-2", claim_id=b, kind="message", message_id="h-2",
                                          text=f"{PLANTED} ruft zurück")])
    _status_file(sim, "status-9000000001-9000000002.json", whole[: len(whole) - 20])
    _status_file(sim, "status-9000000003-9000000003.json", [
        PartnerUpdate(update_id="h-3", claim_id=b, kind="status", code=WORKING)])
    with read_tx(gw.engine) as conn:
        before = conn.execute(partner_sync.select()).mappings().one()["cursor"]
    with pytest.raises(DeliveryError, match="status-9000000001-9000000002.json") as err:
        sync_partner(gw, PARTNER)
    assert err.value.retryable and PLANTED not in str(err.value)
    with read_tx(gw.engine) as conn:
        row = conn.execute(partner_sync.select()).mappings().one()
    assert row["cursor"] == before and "status-9000000001-9000000002.json" in row["last_error"]
    assert claims_by_state(gw)[State.HANDED_OVER] == _sent(gw)
    _status_file(sim, "status-9000000001-9000000002.json", whole)
    result = sync_partner(gw, PARTNER)
    assert result.counts == {"applied": 2, "recorded": 1}
    assert a in claims_by_state(gw)[State.IN_PROGRESS] and b in claims_by_state(gw)[State.IN_PROGRESS]
    # The same file appearing again under a later name (a partner re-sending its last report) changes nothing.
    _status_file(sim, "status-9000000004-9000000005.json", whole)
    assert sync_partner(gw, PARTNER).counts == {"duplicate": 2}
    assert PLANTED not in _everything_written(gw)


# -- receipts for instructions ----------------------------------------------------------------------------

@pytest.mark.parametrize("sim", ["directory"], indirect=True)
def test_a_receipt_for_an_instruction_never_sent_is_not_taken_as_the_partners_ack(sim: Harness, gw: App) -> None:
    """The agency's status file confirms instructions the gateway never sent it, or sent about another claim.
    Neither becomes a ``partner_ack`` on the claim (the history would say a request arrived that nothing shows
    arrived); the real receipt for the real instruction does."""
    a, b = _delivered(sim, gw)[:2]
    claim_ops.cancel(gw, "demo", a, "paid at the counter")
    _deliver(gw)
    sim.pump()  # the agency takes the instruction and writes its receipt into its next status file
    with read_tx(gw.engine) as conn:
        [cancel] = [r["idempotency_key"] for r in outbox_store.listing(conn) if r["operation"] == "cancel"]
    iid = cancel.replace(":", "-")
    _status_file(sim, "status-9000000001-9000000002.json", [
        PartnerUpdate(update_id="i-1", claim_id=b, kind="instruction", code="INSTRUCTION_RECEIVED", instruction_id=iid),
        PartnerUpdate(update_id="i-2", claim_id=a, kind="instruction", code="INSTRUCTION_RECEIVED",
                      instruction_id=f"cancel-{a}-999999")])
    result = sync_partner(gw, PARTNER)
    assert result.counts.get("unknown_instruction") == 2
    with read_tx(gw.engine) as conn:
        acks = {cid: [e["data"].get("instruction") for e in claim_store.history(conn, cid) if e["kind"] == "partner_ack"]
                for cid in (a, b)}
    assert acks == {a: [iid], b: []}


# -- operations a partner cannot take ------------------------------------------------------------------------

@pytest.mark.parametrize("sim", ["email"], indirect=True)
def test_every_operation_to_a_mail_partner_is_refused_at_once_and_nothing_is_queued(sim: Harness, gw: App) -> None:
    """A partner reached by mail takes case files only: a cancellation, a direct payment, a message, a
    monitoring or refresh request is refused to the client at once, with no event and no outbox row, never
    reported forwarded and then dropped. Labels stay the client's own (not forwarded)."""
    ingest_file(gw, DEMO, "demo")
    _deliver(gw)
    cid = claims_by_state(gw)[State.HANDED_OVER][0]
    with read_tx(gw.engine) as conn:
        events_before = len(claim_store.history(conn, cid))
    rows_before = len(_outbox(gw))
    for call in (lambda: claim_ops.cancel(gw, "demo", cid, "paid"),
                 lambda: claim_ops.report_payment(gw, "demo", cid, Decimal("5.00"), date(2026, 11, 1)),
                 lambda: claim_ops.send_message(gw, "demo", cid, "Bitte melden"),
                 lambda: claim_ops.request_monitoring(gw, "demo", cid),
                 lambda: claim_ops.refresh(gw, "demo", cid)):
        with pytest.raises(Unsupported, match=PARTNER):
            call()
    assert not claim_ops.set_labels(gw, "demo", cid, ["vip"]).forwarded
    with read_tx(gw.engine) as conn:
        kinds = [e["kind"] for e in claim_store.history(conn, cid)[events_before:]]
    assert kinds == ["labels_set"] and len(_outbox(gw)) == rows_before


# -- one partner's failure is its own ------------------------------------------------------------------------

@contextmanager
def _delivered_beside(other: str, sim: Harness, tmp_path: Path, db_url: str, keys_template: Path) -> Iterator[App]:
    """The demo file delivered to the simulated partner, beside a second directory partner ``other`` (first in the
    sync round's order) that has nothing of it."""
    path = write_config(tmp_path, db_url, partners={
        PARTNER: sim.partner(),
        other: {"adapter": "directory", "certificate": CERT, "options": {"path": f"var/partners/{other}"}}},
        clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": PARTNER}},
        routing=[{"partner": PARTNER, "client": "demo"}])
    shutil.copytree(keys_template, tmp_path / "var" / "keys", dirs_exist_ok=True)
    sim.start()
    app = build_app(path, migrate=True)
    app.now = Clock(app)  # type: ignore[method-assign]
    try:
        ingest_file(app, DEMO, "demo")
        _deliver(app)
        sim.pump()
        yield app
    finally:
        app.close()


@pytest.mark.parametrize("sim", ["directory"], indirect=True)
def test_a_partner_whose_sync_fails_does_not_keep_the_others_from_theirs(sim: Harness, tmp_path: Path, db_url: str,
                                                                         keys_template: Path) -> None:
    """Two partners are due; the first in order has a broken status file. Its failure is recorded on its own
    sync row (and counted), and the other partner's updates are applied in the same round."""
    with _delivered_beside("a-broken", sim, tmp_path, db_url, keys_template) as app:
        broken = tmp_path / "var" / "partners" / "a-broken" / "status"
        broken.mkdir(parents=True)
        (broken / "status-1.json").write_bytes(b'[{"update_id": "b-1", "claim_id": 1, "kind": "sta')
        seen: list[str] = []
        out = sync_due(app, on_error=lambda pid, exc: seen.append(pid))
        assert "status-1.json" in str(out["a-broken"])
        assert set(claims_by_state(app)) <= {State.HANDED_OVER, State.HELD}
        assert not isinstance(out[PARTNER], str) and out[PARTNER].counts.get("applied")
        with read_tx(app.engine) as conn:
            rows = {r["partner_id"]: r for r in conn.execute(partner_sync.select()).mappings()}
        assert "status-1.json" in rows["a-broken"]["last_error"] and rows[PARTNER]["last_error"] is None


@pytest.mark.parametrize("sim", ["directory"], indirect=True)
@pytest.mark.parametrize("error", [TimeoutError("timed out"), ConnectionResetError(104, "Connection reset by peer")])
def test_a_partner_timing_out_plainly_does_not_end_the_round(sim: Harness, tmp_path: Path, db_url: str,
                                                              keys_template: Path, error: OSError,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A partner's plain timeout or reset connection (no adapter wraps every one of them) is that partner's
    failure: recorded on its sync row, and the partners after it in the round are pulled. It used to end the
    round as if it were the gateway's own database trouble, so a partner first in order timing out kept every
    other partner from its updates. The error is raised by a patched adapter method: no adapter here lets one
    through, which is exactly why the sync must not rely on it."""
    from adapters.directory import DirectoryAdapter

    real = DirectoryAdapter.fetch_updates

    def flaky(self: DirectoryAdapter, cursor: str | None) -> Any:
        if self.partner_id == "a-flaky":
            raise error
        return real(self, cursor)

    monkeypatch.setattr(DirectoryAdapter, "fetch_updates", flaky)
    with _delivered_beside("a-flaky", sim, tmp_path, db_url, keys_template) as app:
        seen: list[str] = []
        out = sync_due(app, on_error=lambda pid, exc: seen.append(pid))
        assert seen == ["a-flaky"] and not isinstance(out[PARTNER], str) and out[PARTNER].counts.get("applied")
        with read_tx(app.engine) as conn:
            rows = {r["partner_id"]: r for r in conn.execute(partner_sync.select()).mappings()}
        assert type(error).__name__ in rows["a-flaky"]["last_error"] and rows[PARTNER]["last_error"] is None
