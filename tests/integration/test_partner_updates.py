"""Partner updates become claim events once each: mapping, unknown codes, foreign claims, collection runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from adapters.base import PartnerUpdate
from adapters.rest import sign_body, verify_signature
from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.entrypoints.cli import main
from gateway.errors import ConfigError
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.partner_updates import apply_updates, collection_run_status, status_target
from gateway.store import claims as claim_store
from gateway.store import messages as message_store
from gateway.store.db import read_tx
from tests.conftest import ROOT

P = "demo-agency"


@pytest.fixture
def delivered(app: App) -> list[int]:
    app.config.partners[P].status_map.update({"ANG": "handed_over", "BEARB": "in_progress:pre_court",
                                              "MB": "in_progress:court_dunning", "BEZ": "closed_paid"})
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    d = Dispatcher(app, owner="t")
    d.drain()
    d.close()
    with read_tx(app.engine) as conn:
        return sorted(r["id"] for r in claim_store.listing(conn, client_id="demo", state="handed_over"))


def up(n: int, claim: int, kind: str = "status", **kw: str) -> PartnerUpdate:
    return PartnerUpdate(update_id=f"u-{n}", claim_id=claim, kind=kind, partner_reference="AZ-1", **kw)  # type: ignore[arg-type]


def state(app: App, cid: int) -> State:
    with read_tx(app.engine) as conn:
        return claim_store.current_states(conn, [cid])[cid]


def test_codes_map_to_states_and_stages_and_each_update_applies_once(app: App, delivered: list[int]) -> None:
    cid = delivered[0]
    r = apply_updates(app, P, [up(1, cid, code="BEARB"), up(2, cid, code="MB")])
    assert r.counts == {"applied": 2}
    assert apply_updates(app, P, [up(1, cid, code="BEARB"), up(2, cid, code="MB")]).counts == {"duplicate": 2}
    with read_tx(app.engine) as conn:
        events = [e for e in claim_store.history(conn, cid) if e["kind"] == "partner_status"]
    assert [(e["state"], e["data"]["stage"], e["actor"]) for e in events] == [
        ("in_progress", "pre_court", "partner"), ("in_progress", "court_dunning", "partner")]


def test_unknown_code_is_kept_verbatim_and_the_state_stays(app: App, delivered: list[int]) -> None:
    cid = delivered[0]
    assert apply_updates(app, P, [up(1, cid, code="ZZ 7/b")]).counts == {"unknown_code": 1}
    assert state(app, cid) is State.HANDED_OVER
    with read_tx(app.engine) as conn:
        [flag] = [e for e in claim_store.history(conn, cid) if e["kind"] == "partner_status_unknown"]
    assert flag["data"] == {"partner": P, "update": "u-1", "partner_reference": "AZ-1", "code": "ZZ 7/b"}


def test_illegal_move_is_recorded_not_forced(app: App, delivered: list[int]) -> None:
    cid = delivered[0]
    apply_updates(app, P, [up(1, cid, code="BEZ")])
    assert apply_updates(app, P, [up(2, cid, code="BEARB")]).counts == {"illegal": 1}
    assert state(app, cid) is State.CLOSED_PAID


def test_a_refused_or_outdated_status_moves_neither_stage_nor_file_number(app: App, delivered: list[int]) -> None:
    """An illegal status (after the claim closed) and a stale one (older than the one applied) are kept in the
    history, but the projection folds every event's stage and reference: they must not show as current."""
    closed, moved = delivered[:2]
    assert apply_updates(app, P, [up(1, closed, code="BEARB"), up(2, closed, code="BEZ")]).counts == {"applied": 2}
    late = PartnerUpdate(update_id="u-3", claim_id=closed, kind="status", code="MB", partner_reference="MB-77")
    assert apply_updates(app, P, [late]).counts == {"illegal": 1}
    newer = PartnerUpdate(update_id="u-4", claim_id=moved, kind="status", code="MB", partner_reference="MB-8",
                          occurred_at="2026-11-02T10:00:00+00:00")
    older = PartnerUpdate(update_id="u-5", claim_id=moved, kind="status", code="BEARB", partner_reference="AZ-8",
                          occurred_at="2026-11-01T10:00:00+00:00")
    assert apply_updates(app, P, [newer, older]).counts == {"applied": 1, "stale": 1}
    with read_tx(app.engine) as conn:
        now = {cid: claim_store.current(conn, cid) for cid in (closed, moved)}
        kept = {e["kind"]: e["data"] for cid in (closed, moved) for e in claim_store.history(conn, cid)
                if e["kind"] in ("partner_status_illegal", "partner_status_stale")}
    assert (now[closed]["state"], now[closed]["stage"], now[closed]["partner_file_number"]) == (
        "closed_paid", "pre_court", "AZ-1")
    assert (now[moved]["stage"], now[moved]["partner_file_number"]) == ("court_dunning", "MB-8")
    assert (kept["partner_status_illegal"]["reported_stage"], kept["partner_status_illegal"]["reported_reference"]) == (
        "court_dunning", "MB-77")
    assert (kept["partner_status_stale"]["reported_stage"], kept["partner_status_stale"]["reported_reference"]) == (
        "pre_court", "AZ-8")


def test_partners_sync_shows_every_outcome(app: App, delivered: list[int], config_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway partners sync` prints a column for each outcome a page can have: an update set aside as stale
    (or with an amount it cannot book) must not vanish from the operator's table."""
    cid = delivered[0]
    cfg = yaml.safe_load(config_path.read_text())
    cfg["partners"][P]["status_map"] = dict(app.config.partners[P].status_map)  # the codes `delivered` added
    config_path.write_text(yaml.safe_dump(cfg))
    status = app.config.path(str(app.config.partners[P].options["path"])) / "status"
    status.mkdir(parents=True, exist_ok=True)
    updates = [{"update_id": "s-1", "claim_id": cid, "kind": "status", "code": "MB",
                "occurred_at": "2026-11-02T10:00:00+00:00"},
               {"update_id": "s-2", "claim_id": cid, "kind": "status", "code": "BEARB",
                "occurred_at": "2026-11-01T10:00:00+00:00"},
               {"update_id": "s-3", "claim_id": cid, "kind": "payment", "amount": "-5", "currency": "EUR"}]
    (status / "status-0000000001-0000000003.json").write_text(json.dumps(updates))
    assert main(["--config", str(config_path), "partners", "sync"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    [row] = [r for r in rows if r.startswith(P + " ")]
    starts = [header.index(name) for name in header.split()]  # cells are aligned under their column names
    table = {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, [*starts[1:], None])}
    assert (table["APPLIED"], table["STALE"], table["INVALID_AMOUNT"]) == ("1", "1", "1")


def test_a_partner_cannot_touch_claims_routed_elsewhere(app: App, delivered: list[int]) -> None:
    assert apply_updates(app, "other-agency", [up(1, delivered[0], code="BEZ")]).counts == {"unknown_claim": 1}
    assert state(app, delivered[0]) is State.HANDED_OVER


def test_payments_and_messages_are_recorded(app: App, delivered: list[int]) -> None:
    cid = delivered[0]
    apply_updates(app, P, [up(1, cid, kind="payment", amount="12.50", currency="EUR", date="2026-11-20"),
                           up(2, cid, kind="message", message_id="m-9", text="Schuldner zahlt in Raten")])
    with read_tx(app.engine) as conn:
        [pay] = [e for e in claim_store.history(conn, cid) if e["kind"] == "partner_payment"]
        [msg] = message_store.for_claim(conn, app.cipher, cid)
    assert (pay["data"]["amount"], pay["data"]["currency"], pay["data"]["date"]) == ("12.50", "EUR", "2026-11-20")
    assert (msg["direction"], msg["partner_message_id"], msg["text"]) == ("from_partner", "m-9",
                                                                          "Schuldner zahlt in Raten")


def test_bad_status_map_entry_names_the_config_key(app: App) -> None:
    app.config.partners[P].status_map["X"] = "in_progres"
    with pytest.raises(ConfigError, match=f"partners.{P}.status_map"):
        status_target(app, P, "X")


def test_collection_run_is_processing_until_the_partner_confirmed_every_claim(app: App) -> None:
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    with read_tx(app.engine) as conn:
        [row] = conn.exec_driver_sql("SELECT id FROM submissions").all()
        assert collection_run_status(conn, row[0]) == "processing"
    d = Dispatcher(app, owner="t")
    d.drain()
    d.close()
    with read_tx(app.engine) as conn:
        assert collection_run_status(conn, row[0]) == "handed_over"


def test_a_status_pushed_before_the_upload_is_answered_keeps_the_receipt(app: App) -> None:
    """A partner that pushes its first statuses while the gateway still waits for the upload's answer (a
    webhook is faster than a busy dispatcher): the claims move on, and the receipt's file number still lands."""
    app.config.partners[P].status_map.update({"ANG": "handed_over", "BEZ": "closed_paid"})
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    d = Dispatcher(app, owner="t")
    adapter = d._adapter(P)
    real = adapter.deliver
    pushed: list[int] = []
    refs: dict[int, str] = {}  # a file number per claim, where the partner's answer names one
    batch_refs: list[str] = []

    def deliver_then_push(batch):  # type: ignore[no-untyped-def]
        receipt = real(batch)
        ids = list(batch.claim_ids)
        updates = [up(i, cid, code="ANG" if i % 2 else "BEZ") for i, cid in enumerate(ids)]
        assert set(apply_updates(app, P, updates).counts) == {"applied"}
        pushed.extend(ids)
        refs.update({cid: receipt.references[cid] for cid in ids if cid in receipt.references})
        batch_refs.append(receipt.partner_reference)
        return receipt

    adapter.deliver = deliver_then_push  # type: ignore[method-assign]
    d.drain()
    d.close()
    assert len(pushed) == 7
    with read_tx(app.engine) as conn:
        for i, cid in enumerate(pushed):
            hist = claim_store.history(conn, cid)
            [receipt] = [e for e in hist if e["kind"] == "receipt" and e["actor"] == "system"]
            assert receipt["state"] == ("handed_over" if i % 2 else "closed_paid")
            if cid in refs:  # the partner's answer named the claim's file number: it lands
                assert receipt["data"]["partner_reference"] == refs[cid] != "AZ-1"
                assert claim_store.current(conn, cid)["partner_file_number"] == refs[cid]
            else:  # only the batch's reference: kept in the history, the status's file number stays
                assert receipt["data"]["batch_reference"] == batch_refs[0]
                assert claim_store.current(conn, cid)["partner_file_number"] == "AZ-1"
            assert [e["kind"] for e in hist].count("partner_status") == 1


@pytest.mark.parametrize("pushed_first", [False, True], ids=["receipt-first", "status-first"])
def test_a_file_partners_file_number_does_not_depend_on_which_came_first(app: App, pushed_first: bool) -> None:
    """A file partner (directory, SFTP) names no file number per claim in its answer to the upload: its status
    carries it. Whether the status or the upload's answer is recorded first, the claim ends with the partner's
    file number, never the batch's file name."""
    app.config.partners[P].status_map.update({"ANG": "handed_over"})
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    d = Dispatcher(app, owner="t")
    adapter = d._adapter(P)
    real = adapter.deliver
    sent: list[int] = []

    def deliver(batch):  # type: ignore[no-untyped-def]
        receipt = real(batch)
        assert receipt.references == {}  # a file partner's answer: one reference for the whole batch
        sent.extend(batch.claim_ids)
        if pushed_first:
            assert set(apply_updates(app, P, [up(i, c, code="ANG") for i, c in enumerate(sent)]).counts) == {"applied"}
        return receipt

    adapter.deliver = deliver  # type: ignore[method-assign]
    d.drain()
    d.close()
    if not pushed_first:
        assert set(apply_updates(app, P, [up(i, c, code="ANG") for i, c in enumerate(sent)]).counts) == {"applied"}
    with read_tx(app.engine) as conn:
        for cid in sent:
            assert claim_store.current(conn, cid)["partner_file_number"] == "AZ-1"
            [receipt] = [e for e in claim_store.history(conn, cid) if e["kind"] == "receipt"]
            assert receipt["data"]["batch"]  # the receipt is still in the history


def test_webhook_signature() -> None:
    body = b'[{"update_id":"1"}]'
    good = sign_body(b"s3cret", body)
    assert verify_signature(b"s3cret", body, good)
    assert not verify_signature(b"s3cret", body + b" ", good)
    assert not verify_signature(b"other", body, good)
    assert not verify_signature(b"s3cret", body, None)
