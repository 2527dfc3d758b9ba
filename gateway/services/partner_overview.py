"""Every configured partner on one page: adapter, capabilities, last sync, last error, backlog and a verdict.

Read only. The figures are ``gateway status``'s (``status_report``: the outbox by state, each partner's sync
row) plus the claims of the configured clients waiting for a partner (queued, delivering) and what the partner accepts
(``operations.capabilities``). The verdict is what the database shows: the last pull failed, a pull is
overdue (more than three intervals ago, or never), dead letters wait, or ok. Where the console runs inside
``serve``, the supervisor's own view of the delivery tasks is added (``tasks``); the CLI and a bare console
have none. No debtor data: ids, counts and error texts the gateway composed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.errors import GatewayError
from gateway.services import operations
from gateway.services.status_report import gateway_status
from gateway.store.db import read_tx
from gateway.store.schema import claim_current

WAITING = ("queued", "delivering")
# Supervised tasks of ``serve`` that move claims to and from partners (partner_tasks, serve), and the prefix of each
# partner's webhook listener's task (``webhook:<partner>``).
PARTNER_TASKS = ("dispatch", "partner_sync")
WEBHOOK_TASK = "webhook:"


@dataclass
class PartnerRow:
    id: str
    adapter: str
    capabilities: list[str]
    sync_enabled: bool
    sync_every_seconds: float
    last_sync_at: datetime | None
    last_error: str | None
    updates: int
    pending: int
    leased: int
    dead: int
    queued: int
    delivering: int
    health: str  # ok, failing, overdue, dead_letters, unknown_adapter
    configured: bool = True  # False: only its traces are left in the database
    next_try_at: datetime | None = None  # every pending row waits until then (a backoff, the partner's Retry-After)


@dataclass
class TaskState:
    name: str
    ok: bool
    runs: int
    failures: int
    consecutive: int
    last_error: str | None


@dataclass
class PartnerOverview:
    partners: list[PartnerRow]
    tasks: list[TaskState] = field(default_factory=list)  # empty: not inside serve
    at: datetime | None = None


class HealthLike(Protocol):
    runs: int
    failures: int
    consecutive: int
    last_error: str | None


def _capabilities(app: App, pid: str) -> list[str] | None:
    try:
        return sorted(operations.capabilities(app, pid))
    except GatewayError:  # an adapter name the registry does not know: shown, not a broken page
        return None


def _verdict(row: PartnerRow, now: datetime) -> str:
    if row.last_error:
        return "failing"
    if row.sync_enabled and (row.last_sync_at is None
                             or now - row.last_sync_at > timedelta(seconds=3 * row.sync_every_seconds)):
        return "overdue"
    if row.dead:
        return "dead_letters"
    return "ok"


def overview(app: App, tasks: Mapping[str, HealthLike] | None = None) -> PartnerOverview:
    """Every partner (configured ones first, then ids only the database still names) with its figures."""
    status = gateway_status(app)
    waiting: dict[tuple[str, str], int] = {}
    with read_tx(app.engine) as conn:
        # by (client_id, state) first: the projection's index (client_id, state, ...) finds the waiting claims
        # without reading every claim (grouped by partner first, SQLite would walk the partner index instead)
        for _, state, partner, n in conn.execute(
                select(claim_current.c.client_id, claim_current.c.state, claim_current.c.partner_id, func.count())
                .where(claim_current.c.client_id.in_(sorted(app.config.clients)),
                       claim_current.c.state.in_(WAITING))
                .group_by(claim_current.c.client_id, claim_current.c.state, claim_current.c.partner_id)):
            if partner is not None:
                waiting[(str(partner), str(state))] = waiting.get((str(partner), str(state)), 0) + int(n)
    now: datetime = status["at"]
    rows = []
    for doc in status["partners"]:
        pid = doc["partner"]
        pcfg = app.config.partners.get(pid)
        caps = _capabilities(app, pid) if pcfg else []
        row = PartnerRow(
            id=pid, adapter=pcfg.adapter if pcfg else "", capabilities=caps or [],
            sync_enabled=bool(pcfg and pcfg.sync.enabled), sync_every_seconds=pcfg.sync.every_seconds if pcfg else 0,
            last_sync_at=doc["last_sync_at"], last_error=doc["last_error"], updates=int(doc["updates"] or 0),
            pending=doc["pending"], leased=doc["leased"], dead=doc["dead"],
            queued=waiting.get((pid, "queued"), 0), delivering=waiting.get((pid, "delivering"), 0),
            health="ok", configured=pcfg is not None, next_try_at=doc.get("next_try_at"))
        row.health = "unknown_adapter" if pcfg and caps is None else _verdict(row, now)
        rows.append(row)
    rows.sort(key=lambda r: (not r.configured, r.id))
    states = [TaskState(name, h.consecutive == 0, h.runs, h.failures, h.consecutive, h.last_error)
              for name, h in sorted((tasks or {}).items()) if name in PARTNER_TASKS or name.startswith(WEBHOOK_TASK)]
    return PartnerOverview(rows, states, now)

