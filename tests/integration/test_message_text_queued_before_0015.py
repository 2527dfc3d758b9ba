"""A message queued by the code before migration 0015 carries its text in the outbox row. 0015 took the text out
of done and dead rows only; such a row still pending is sent after the upgrade and must not keep the text when
done (for good), nor send it after the claim's erasure. Real HTTP partner simulator, real migrations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.services.dispatch import Dispatcher
from gateway.services.erasure import erase
from gateway.services.ingest import ingest_file
from gateway.store import claims as claim_store
from gateway.store import messages as message_store
from gateway.store import outbox as outbox_store
from gateway.store.db import _alembic_config, read_tx, upgrade, write_tx
from gateway.store.schema import outbox
from tests.conftest import ROOT
from tests.contract.harness import PARTNER, Harness, running

TEXT = "Schuldnerin Quetzalwurm bittet um Rueckruf"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Harness]:
    with running("http", tmp_path) as h:
        yield h


def _drain(app: App) -> None:
    worker = Dispatcher(app, owner="w")
    try:
        worker.drain()
    finally:
        worker.close()


def _rows(app: App) -> dict[str, tuple[str, dict[str, object]]]:
    with read_tx(app.engine) as conn:
        return {r.idempotency_key: (r.status, json.loads(r.payload))
                for r in conn.execute(select(outbox.c.idempotency_key, outbox.c.status, outbox.c.payload))}


def test_a_message_row_from_before_0015_loses_its_text_when_sent_and_is_not_sent_after_erasure(
        gw: App, sim: Harness) -> None:
    app = gw
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    _drain(app)
    with read_tx(app.engine) as conn:
        ids = sorted(r["id"] for r in claim_store.listing(conn, client_id="demo"))
        states = claim_store.current_states(conn, ids)
    sent, erased = [c for c in ids if states[c] is State.HANDED_OVER][:2]
    command.downgrade(_alembic_config(app.engine), "0014")
    mids: dict[int, int] = {}
    with write_tx(app.engine) as conn:  # as the code before 0015 queued a message: its text in the row
        for cid in (sent, erased):
            mid = message_store.add(conn, app.cipher, claim_id=cid, client_id="demo", direction="to_partner",
                                    text=TEXT)
            assert mid is not None
            mids[cid] = mid
            outbox_store.enqueue(conn, key=f"send_message:{cid}:old", client_id="demo", partner_id=PARTNER,
                                 operation="send_message", payload={"claim_id": cid, "message_id": mid, "text": TEXT},
                                 now=app.now())
    upgrade(app.engine)
    erase(app, [erased], "Art. 17 DSGVO")
    _drain(app)
    rows = _rows(app)
    assert rows[f"send_message:{sent}:old"] == ("done", {"claim_id": sent, "message_id": mids[sent]}), rows
    status, payload = rows[f"send_message:{erased}:old"]
    assert "text" not in payload and status == "dead", rows  # the erased message is not sent from the row's copy
    assert sim.agency.cases[sent].client_messages == [TEXT]
    assert sim.agency.cases[erased].client_messages == []
