"""A claim's current labels (client-defined flags), kept in a table so lists can filter by them.

The history of label changes is in ``claim_events`` (kind ``labels_set``); this table only holds
the latest set, replaced as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, select

from gateway.store.schema import claim_labels
from gateway.store.sql import bulk_insert


def add_many(conn: Connection, rows: Sequence[tuple[int, str]]) -> None:
    """Insert (claim_id, label) rows for new claims."""
    bulk_insert(conn, claim_labels, ("claim_id", "label"), sorted(set(rows)))


def replace(conn: Connection, claim_id: int, labels: Sequence[str]) -> None:
    """Make ``labels`` the claim's whole label set."""
    conn.execute(delete(claim_labels).where(claim_labels.c.claim_id == claim_id))
    add_many(conn, [(claim_id, label) for label in labels])


def for_claims(conn: Connection, claim_ids: Sequence[int]) -> dict[int, list[str]]:
    """Current labels per claim, sorted."""
    out: dict[int, list[str]] = {}
    ids = list(claim_ids)
    for i in range(0, len(ids), 500):
        q = (select(claim_labels.c.claim_id, claim_labels.c.label)
             .where(claim_labels.c.claim_id.in_(ids[i:i + 500])).order_by(claim_labels.c.label))
        for cid, label in conn.execute(q):
            out.setdefault(cid, []).append(label)
    return out
