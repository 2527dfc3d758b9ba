"""Migration 0016: ``outbox.failing_since``. A row failing when the gateway is upgraded keeps the window it had
(from when it was queued); a row not tried yet and a finished one get none."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import select

from gateway.bootstrap import App
from gateway.store import outbox as outbox_store
from gateway.store.db import _alembic_config, read_tx, upgrade, write_tx
from gateway.store.schema import outbox


def test_rows_failing_at_the_upgrade_keep_their_window_from_when_they_were_queued(app: App) -> None:
    command.downgrade(_alembic_config(app.engine), "0015")
    queued = app.now() - timedelta(hours=5)
    with write_tx(app.engine) as conn:
        for key, status, attempts in (("failing", "pending", 2), ("leased", "leased", 1), ("waiting", "pending", 0),
                                      ("dead", "dead", 9), ("done", "done", 1)):
            outbox_store.enqueue(conn, key=key, client_id="demo", partner_id="demo-agency", operation="deliver_batch",
                                 payload={"claim_ids": [1]}, now=queued)
            conn.execute(outbox.update().where(outbox.c.idempotency_key == key)
                         .values(status=status, attempts=attempts))
    upgrade(app.engine)
    with read_tx(app.engine) as conn:
        since = {k: v for k, v in conn.execute(select(outbox.c.idempotency_key, outbox.c.failing_since))}
    assert since == {"failing": queued, "leased": queued, "waiting": None, "dead": None, "done": None}
