"""A node whose partner-sync lease another node took over between two chunks of a page (it stalled past the
lease) stops there: that is the fence working, not a failing partner. The other node's pull stands: its cursor
is not written back over and no error is recorded on the partner's sync row (which `gateway partners list`, the
`gateway_partner_sync_failing` gauge and its alert read)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from adapters.statusfiles import status_name
from gateway import liveness
from gateway.bootstrap import App
from gateway.services.partner_sync import APPLY_CHUNK, sync_due
from gateway.services.partner_updates import save_cursor
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import leases
from gateway.store.schema import partner_sync as partner_sync_table
from tests.integration.test_partner_sync_chunks import handed_over_with_a_page_of_statuses

P = "demo-agency"


def test_a_lease_lost_between_chunks_is_no_sync_error(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.config.partners[P].sync.enabled = True
    n = APPLY_CHUNK + 10
    handed_over_with_a_page_of_statuses(app, n)

    beats: list[int] = []
    real_beat = liveness.beat

    def other_node_takes_over() -> None:
        # After the first chunk committed: this node stalled past its lease; node-b took the lease over and
        # pulled the page to its end (its cursor saved, no error).
        beats.append(1)
        real_beat()
        if len(beats) == 2:
            with write_tx(app.engine) as conn:
                conn.execute(update(leases).where(leases.c.name == f"partner_sync:{P}").values(
                    owner="node-b", expires_at=app.now() + timedelta(seconds=60)))
                save_cursor(conn, P, status_name(1, n), n, now=app.now())

    monkeypatch.setattr(liveness, "beat", other_node_takes_over)
    errors: list[Any] = []
    out = sync_due(app, on_error=lambda pid, exc: errors.append((pid, exc)))
    assert len(beats) >= 2
    assert errors == [] and not isinstance(out.get(P), str), (errors, out)
    with read_tx(app.engine) as conn:
        row = conn.execute(partner_sync_table.select().where(partner_sync_table.c.partner_id == P)).mappings().one()
    assert row["last_error"] is None, row["last_error"]
    assert row["cursor"] == status_name(1, n)
