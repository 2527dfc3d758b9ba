"""Migration 0015: message texts written into outbox rows before the dispatcher read them from ``messages`` are
removed from rows that are done or dead; a row still to be sent keeps what it carries."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import select

from gateway.bootstrap import App
from gateway.store import outbox as outbox_store
from gateway.store.db import _alembic_config, read_tx, upgrade, write_tx
from gateway.store.schema import outbox

TEXT = "Schuldnerin Quetzalwurm ruft zurück"


def test_the_upgrade_removes_texts_from_done_and_dead_rows(app: App) -> None:
    command.downgrade(_alembic_config(app.engine), "0014")
    with write_tx(app.engine) as conn:
        for status in ("done", "dead", "pending"):
            key = f"send_message:1:{status}"
            outbox_store.enqueue(conn, key=key, client_id="demo", partner_id="demo-agency", operation="send_message",
                                 payload={"claim_id": 1, "message_id": 7, "text": TEXT})
            conn.execute(outbox.update().where(outbox.c.idempotency_key == key).values(status=status))
        outbox_store.enqueue(conn, key="cancel:1:1", client_id="demo", partner_id="demo-agency", operation="cancel",
                             payload={"claim_id": 1, "reason": "bezahlt"})
    upgrade(app.engine, "0015")  # (0018 seals cancel reasons: tests/integration/test_sealed_reasons.py)
    with read_tx(app.engine) as conn:
        payloads = {r.idempotency_key: json.loads(r.payload)
                    for r in conn.execute(select(outbox.c.idempotency_key, outbox.c.payload))}
    assert payloads["send_message:1:done"] == payloads["send_message:1:dead"] == {"claim_id": 1, "message_id": 7}
    assert payloads["send_message:1:pending"]["text"] == TEXT  # the code before 0015 sends what a pending row carries
    assert payloads["cancel:1:1"] == {"claim_id": 1, "reason": "bezahlt"}
