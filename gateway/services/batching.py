"""What a partner batch shares, and the outbox rows that keep it that way.

A batch's header names one client, one partner and one currency (its total is a sum in that
currency), so every place that enqueues ``deliver_batch`` work groups its claims by partner and
currency (the client is the enqueuing site's own). Keys stay deterministic, so a resumed ingest
writes the same rows: ``{prefix}:{partner}:{n}``, with ``:{currency}`` added only where one partner's
claims come in more than one currency (a single-currency batch keeps the key it always had).
Rows enqueued before this grouping existed may still mix currencies; the dispatcher splits them with
``split_mixed`` instead of failing valid claims because of their neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from gateway.store import outbox as outbox_store
from gateway.store.outbox import OutboxItem
from gateway.store.schema import claims

log = logging.getLogger(__name__)

DELIVER = "deliver_batch"
# (claim id, partner id, currency) of a claim on its way to a batch.
Member = tuple[int, str, str]


def enqueue_deliveries(conn: Connection, *, prefix: str, client_id: str, members: Iterable[Member],
                       payload: dict[str, Any], number: int | None = None, size: int | None = None,
                       now: datetime | None = None) -> list[str]:
    """One ``deliver_batch`` row per partner and currency in the caller's transaction; returns the keys.

    ``number`` names the one row of each group (an ingest chunk, already at most a batch long);
    without it a group is cut into rows of at most ``size`` claims, numbered from 1.
    """
    groups: dict[str, dict[str, list[int]]] = {}
    for claim_id, partner, currency in members:
        groups.setdefault(partner, {}).setdefault(currency, []).append(claim_id)
    keys: list[str] = []
    for partner, by_currency in sorted(groups.items()):
        mixed = len(by_currency) > 1
        for currency, ids in sorted(by_currency.items()):
            step = len(ids) if number is not None else max(1, size or len(ids))
            for part, i in enumerate(range(0, len(ids), step), start=1):
                key = f"{prefix}:{partner}:{number if number is not None else part}" + (f":{currency}" if mixed
                                                                                         else "")
                outbox_store.enqueue(conn, key=key, client_id=client_id, partner_id=partner, operation=DELIVER,
                                     payload={**payload, "claim_ids": ids[i:i + step]}, now=now)
                keys.append(key)
    return keys


def _shared(conn: Connection, claim_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    for i in range(0, len(claim_ids), 500):
        q = select(claims.c.id, claims.c.client_id, claims.c.currency).where(claims.c.id.in_(claim_ids[i:i + 500]))
        out.update({cid: (client, currency) for cid, client, currency in conn.execute(q)})
    return out


def split_mixed(conn: Connection, item: OutboxItem, claim_ids: Sequence[int], now: datetime | None = None, *,
                shared: Mapping[int, tuple[str, str]] | None = None) -> bool:
    """Split a leased row whose claims do not share the row's client and one currency; False if they do.

    In the caller's transaction: the row is completed as ``split`` and one row per (client, currency)
    is enqueued under ``{key}:{currency}`` (``{key}:{client}:{currency}`` for a stray client's claims),
    so a second look at the same row could only produce the same keys. A lost lease writes nothing.
    ``shared``: each claim's (client, currency) when the caller has read them already.
    """
    if shared is None:
        shared = _shared(conn, claim_ids)
    groups: dict[tuple[str, str], list[int]] = {}
    for cid in claim_ids:
        if cid in shared:
            groups.setdefault(shared[cid], []).append(cid)
    if len(groups) <= 1 and all(client == item.client_id for client, _ in groups):
        return False
    base = {k: v for k, v in item.payload.items() if k != "claim_ids"}
    rows = [(f"{item.idempotency_key}:{currency}" if client == item.client_id
             else f"{item.idempotency_key}:{client}:{currency}", client, ids)
            for (client, currency), ids in sorted(groups.items())]
    if not outbox_store.complete(conn, item, {"split": [key for key, _, _ in rows]}, now=now):
        log.warning("batching.lease_lost outbox=%d: another worker owns it now", item.id)
        return True
    for key, client, ids in rows:
        outbox_store.enqueue(conn, key=key, client_id=client, partner_id=item.partner_id, operation=DELIVER,
                             payload={**base, "claim_ids": ids, "split_from": item.id}, now=now)
    log.info("batching.split outbox=%d partner=%s into=%d keys=%s", item.id, item.partner_id, len(rows),
             ",".join(key for key, _, _ in rows))
    return True
