"""Operator actions on many claims at once: release and cancel by id, submission or filter.

The operator acts for the client: every claim goes through the same use cases as the client's own
SOAP calls (``claim_ops.release``, ``claim_ops.cancel``), grouped by client, so the same rules and
events apply. A claim that cannot take the action is reported with why; the others go on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from gateway.bootstrap import App
from gateway.errors import GatewayError, IllegalTransition, NotFound
from gateway.services import claim_ops
from gateway.store import claims as claim_store
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from gateway.store.schema import claims

SELECT_CAP = 1_000_000  # claims one filter may select (a safety net, far above a client's run)


class SelectionError(GatewayError):
    """The command does not say which claims (or says it twice)."""


@dataclass
class BulkResult:
    done: list[tuple[int, str]] = field(default_factory=list)  # (claim id, new state or run)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (claim id, why)


def select_claims(app: App, *, ids: list[int] | None = None, submission: str | None = None,
                  client: str | None = None, status: str | None = None) -> dict[str, list[int]]:
    """Claim ids by client, from exactly one of: ids, a submission reference, a client with a status filter."""
    given = sum(bool(x) for x in (ids, submission, client))
    if given != 1:
        raise SelectionError("name claim ids, or --submission REF, or --client ID with --status")
    out: dict[str, list[int]] = defaultdict(list)
    with read_tx(app.engine) as conn:
        if ids:
            found = {r["id"]: r["client_id"] for r in conn.execute(
                select(claims.c.id, claims.c.client_id).where(claims.c.id.in_(ids))).mappings()}
            for cid in dict.fromkeys(ids):
                if cid not in found:
                    raise NotFound(f"no claim {cid}")
                out[found[cid]].append(cid)
        elif submission:
            sub = sub_store.get(conn, submission)
            out[sub["client_id"]] = [r[0] for r in conn.execute(
                select(claims.c.id).where(claims.c.submission_id == sub["id"]).order_by(claims.c.id))]
        else:
            if not status:
                raise SelectionError("--client needs --status (e.g. held): a filter never means every claim")
            assert client is not None
            app.config.client(client)
            rows = claim_store.listing(conn, client_id=client, state=status, limit=SELECT_CAP)
            out[client] = sorted(r["id"] for r in rows)
    return dict(out)


def release(app: App, selection: dict[str, list[int]], *, submission: str | None = None,
            reason: str | None = None) -> BulkResult:
    """Release held claims (held -> queued, a collection run per client); by submission: its held claims.

    ``reason`` is recorded with each released claim; a time-barred claim without one is skipped.
    """
    result = BulkResult()
    for client_id, ids in selection.items():
        if submission:
            r = claim_ops.release(app, client_id, submission=submission, reason=reason)
        else:
            held = _held(app, ids)
            result.skipped += [(c, "not held") for c in ids if c not in held]
            if not held:
                continue
            r = claim_ops.release(app, client_id, claim_ids=held, reason=reason)
        result.done += [(c, f"queued (run {r.run})") for c in r.released]
        result.skipped += r.skipped
    return result


def _held(app: App, ids: list[int]) -> list[int]:
    with read_tx(app.engine) as conn:
        states = claim_store.current_states(conn, ids)
    return [c for c in ids if states.get(c) is not None and states[c].value == "held"]


def cancel(app: App, selection: dict[str, list[int]], reason: str | None) -> BulkResult:
    """Cancel each claim (at once before handover, else requested from the partner); final ones are skipped."""
    result = BulkResult()
    for client_id, ids in selection.items():
        for cid in ids:
            try:
                r = claim_ops.cancel(app, client_id, cid, reason)
            except IllegalTransition as exc:
                result.skipped.append((cid, exc.reason))
                continue
            except GatewayError as exc:  # e.g. the partner takes no cancellations: refused, nothing written
                result.skipped.append((cid, str(exc)))
                continue
            result.done.append((cid, r.state if r.state == "cancelled_by_client" else "cancel requested"))
    return result
