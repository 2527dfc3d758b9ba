"""Claims and their append-only events, and the current-state projection written with them.

There is deliberately no function here that updates or deletes a claim or an event: a claim is
written once, and every change of state is a new event checked against the lifecycle table. Every
event also updates the claim's row in ``claim_current`` (``store/projection.py``) in the same
transaction; current states are read from there.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, RowMapping, Select, String, and_, any_, bindparam, func, or_, select

from gateway.domain.unicode_forms import stored_forms
from gateway.crypto import envelope
from gateway.crypto.fieldcrypt import FieldCipher
from gateway.domain.lifecycle import Actor, State, check_transition
from gateway.domain.model import Claim, Debtor, to_minor
from gateway.domain.sandbox import is_sandbox_client
from gateway.errors import IllegalTransition, KeyStoreError, NotFound
from gateway.store import keys_store, projection
from gateway.store.projection import EventFacts
from gateway.store.schema import claim_current, claim_events, claims
from gateway.store.sql import bulk_insert, db_time, dumps, loads, utcnow

_EMPTY_DEBTOR = Debtor()
_ERASED = Debtor(last_name=envelope.ERASED_NAME)
_claim_decoder = msgspec.json.Decoder(Claim)


class _Personal(msgspec.Struct, omit_defaults=True):
    debtor: Debtor
    memo: str | None = None


_personal_decoder = msgspec.json.Decoder(_Personal)
_encoder = msgspec.json.Encoder()
# Statements of every synchronous submission, built once: run with parameters, SQLAlchemy reuses their cache
# key and compiled form instead of building both again per call.
_MAX_CLAIM_ID = select(func.coalesce(func.max(claims.c.id), 0))
_MAX_EVENT_ID = select(func.coalesce(func.max(claim_events.c.id), 0))
_EXISTING_SQLITE = select(claims.c.creditor_reference, claims.c.id, claims.c.submission_id, claims.c.source_row).where(
    claims.c.client_id == bindparam("client_id"), claims.c.creditor_reference.in_(bindparam("refs", expanding=True)))



@functools.cache
def _existing_pg() -> Select[Any]:
    # built on first use: the PostgreSQL dialect is ~60 ms of import an ingest worker on SQLite never needs
    from sqlalchemy.dialects import postgresql
    return select(claims.c.creditor_reference, claims.c.id, claims.c.submission_id, claims.c.source_row).where(
        claims.c.client_id == bindparam("client_id"),
        claims.c.creditor_reference == any_(bindparam("refs", type_=postgresql.ARRAY(String))))


class NewClaim(msgspec.Struct, kw_only=True):
    """A validated claim on its way into the store, with where intake put it."""

    claim: Claim
    state: State  # queued or held
    source_row: int | None = None
    event_data: dict[str, Any] | None = None


def _aad(client_id: str, reference: str) -> bytes:
    return f"claim:{client_id}\x1f{reference}".encode()


def allocate_ids(conn: Connection, n: int) -> list[int]:
    """``n`` fresh claim ids; call inside the write transaction that inserts them."""
    if n == 0:
        return []
    if conn.dialect.name == "sqlite":  # the write lock is held, so max(id) is ours until commit
        start = int(conn.execute(_MAX_CLAIM_ID).scalar_one()) + 1
        return list(range(start, start + n))
    # One row holding an array: 5,000 rows of one id each cost ~7x the client CPU (2.7 against 0.4 ms).
    ids = conn.exec_driver_sql("SELECT array_agg(nextval('claim_id_seq')) FROM generate_series(1, %s)",
                               (n,)).scalar_one()
    return [int(i) for i in ids]


# The stored columns of one claim, computed without a database (in an ingest worker process):
# client_id, creditor_reference, partner_id, claim_type, currency, principal_minor, open_minor,
# invoice_number, invoice_date, due_date, debtor_index, personal (ciphertext), body (JSON text); then, not
# stored in ``claims`` but opening the case account: fees_minor, paid_before_minor; then the claim's raw data
# key and the debtor name's blind index, which go (the key wrapped) into ``claim_keys``.
PreparedClaim = tuple[Any, ...]
_STORED = 13  # how many of a PreparedClaim's values are ``claims`` columns
_CLAIM_COLUMNS = ("id", "client_id", "creditor_reference", "partner_id", "claim_type", "currency", "principal_minor",
                  "open_minor", "invoice_number", "invoice_date", "due_date", "debtor_index", "personal", "body",
                  "submission_id", "source_row", "created_at")
_EVENT_COLUMNS = ("claim_id", "client_id", "state", "from_state", "actor", "kind", "data", "created_at")


class _Keep:
    """``prepare_claim``'s default for ``partner_id``: the claim's own."""


_KEEP = _Keep()


def prepare_claim(cipher: FieldCipher, c: Claim, total_open: Any = None,
                  partner_id: str | None | _Keep = _KEEP) -> PreparedClaim:
    """A claim's stored column values: personal data encrypted, the rest as its JSON body.

    ``partner_id``: the routed partner, as if it were the claim's (saves a copy of the claim per row).
    """
    partner = c.partner_id if isinstance(partner_id, _Keep) else partner_id
    personal = _encoder.encode(_Personal(debtor=c.debtor, memo=c.memo))
    dek, nonce = envelope.new_key_and_nonce()
    body = _encoder.encode(msgspec.structs.replace(c, debtor=_EMPTY_DEBTOR, memo=None, partner_id=partner))
    name = c.debtor.display_name()
    total = c.total_open_amount if total_open is None else total_open
    fees = to_minor(c.fees_total, c.currency) if c.fees else 0
    paid = to_minor(c.payments_total, c.currency) if c.payments_received else 0
    return (c.client_id, c.creditor_reference, partner, c.claim_type.value, c.currency,
            to_minor(c.principal_amount, c.currency), to_minor(total, c.currency), c.invoice_number, c.invoice_date,
            c.due_date, None, envelope.seal(dek, personal, _aad(c.client_id, c.creditor_reference), nonce),
            body.decode(), fees, paid, dek, cipher.blind_index(name, c.client_id) if name else None)


def insert_prepared(conn: Connection, submission_id: int,
                    items: Sequence[tuple[PreparedClaim, State, int | None, dict[str, Any] | str | None]],
                    now: datetime | None = None, *, cipher: FieldCipher | None = None) -> list[int]:
    """Insert prepared claims (columns, first state, source row, event data) with their first events.

    Event data is a dict, or the same already encoded as JSON text.

    ``cipher`` wraps each claim's data key under its client's key (``store/keys_store.py``); only
    hand-built columns without a data key (benchmarks) may leave it out.
    """
    ids = allocate_ids(conn, len(items))
    event_ids = allocate_event_ids(conn, len(items))
    t: Any = db_time(conn, now or utcnow())
    if conn.dialect.name == "sqlite":
        t = t.isoformat(" ")  # what sqlite3's datetime adapter stores, done once instead of per row
    received, actor = State.RECEIVED.value, Actor.SYSTEM.value
    claim_rows: list[tuple[Any, ...]] = [(cid, *cols[:_STORED], submission_id, row, t)
                                         for cid, (cols, _, row, _) in zip(ids, items)]
    claim_columns: tuple[str, ...] = _CLAIM_COLUMNS
    if any(is_sandbox_client(cols[0]) for cols, _, _, _ in items):  # production rows leave it to the default
        claim_columns = (*_CLAIM_COLUMNS, "sandbox")
        claim_rows = [(*r, is_sandbox_client(cols[0])) for r, (cols, _, _, _) in zip(claim_rows, items)]
    # Event data may come already encoded (ingest formats the common {"submission", "row"} itself).
    event_rows = [(eid, cid, cols[0], state.value, received, actor, "intake",
                   (data if data.__class__ is str else dumps(data)) if data else None, t)
                  for eid, cid, (cols, state, _, data) in zip(event_ids, ids, items)]
    opening = _opening_values
    current_rows = [opening(cid, eid, submission_id, cols, state.value, t)
                    for eid, cid, (cols, state, _, _) in zip(event_ids, ids, items)]
    bulk_insert(conn, claims, claim_columns, claim_rows)
    bulk_insert(conn, claim_events, ("id", *_EVENT_COLUMNS), event_rows)
    bulk_insert(conn, claim_current, projection.COLUMNS, current_rows)
    keyed = [(cid, cols[0], cols[15], cols[16]) for cid, (cols, _, _, _) in zip(ids, items) if len(cols) > 15]
    if keyed:
        if cipher is None:
            raise KeyStoreError("insert_prepared needs the cipher to store the claims' data keys")
        keys_store.insert_claim_keys(conn, cipher, keyed, now)
    return ids


def _opening(cid: int, eid: int, submission_id: int, cols: PreparedClaim, state: State, t: Any) -> tuple[Any, ...]:
    ev = EventFacts(eid, state.value, State.RECEIVED.value, Actor.SYSTEM.value, "intake", None, t)
    row = projection.opening_row(cid, cols[0], cols[1], submission_id, cols[2], cols[4], cols[5], cols[13],
                                 cols[14], ev)
    values: tuple[Any, ...] = _current_values(row)
    return values


_current_values = operator.itemgetter(*projection.COLUMNS)  # a projection row as a tuple in column order, in C


def _opening_maker() -> Callable[[int, int, int, PreparedClaim, str, Any], tuple[Any, ...]]:
    """``_opening`` as one generated function returning the tuple directly.

    ``_opening`` builds an EventFacts, a dict of 25 columns and then the tuple for every claim (~3 us, a
    tenth of storing a claim). The generated function names the columns that depend on the claim and takes
    every other column's value from ``projection.opening_row`` itself, after checking that those really are
    the same for different claims; ``tests/unit/test_store_opening.py`` compares both on many claims.
    """
    variable = {"claim_id": "cid", "client_id": "cols[0]", "creditor_reference": "cols[1]",
                "submission_id": "sid", "partner_id": "cols[2]", "state": "state", "currency": "cols[4]",
                "principal_minor": "cols[5]", "fees_minor": "cols[13]", "paid_direct_minor": "cols[14]",
                "received_at": "t", "updated_at": "t", "last_event_id": "eid",
                "open_minor": "(b if b > 0 else 0)", "overpaid_minor": "(-b if b < 0 else 0)"}
    probes = [("a", "r1", None, "EUR", 100, 5, 0, "queued"), ("b", "r2", "p", "CHF", 7, 0, 50, "held")]
    fixed: list[tuple[Any, ...]] = []
    for client, ref, partner, cur, principal, fees, paid, state in probes:
        ev = EventFacts(2, state, State.RECEIVED.value, Actor.SYSTEM.value, "intake", None, "t")
        fixed.append(_current_values(projection.opening_row(1, client, ref, 3, partner, cur, principal, fees, paid,
                                                            ev)))
    parts = []
    for i, name in enumerate(projection.COLUMNS):
        if name in variable:
            parts.append(variable[name])
        elif fixed[0][i] == fixed[1][i] and isinstance(fixed[0][i], (int, type(None))):
            parts.append(repr(fixed[0][i]))
        else:  # a column that now depends on the claim: fall back to the general path
            return lambda cid, eid, sid, cols, state, t: _opening(cid, eid, sid, cols, State(state), t)
    source = (f"def opening(cid, eid, sid, cols, state, t):\n    b = cols[5] + cols[13] - cols[14]\n"
              f"    return ({', '.join(parts)},)\n")
    scope: dict[str, Any] = {}
    exec(compile(source, "<claims._opening_values>", "exec"), scope)  # noqa: S102 - built from our own names
    made: Callable[[int, int, int, PreparedClaim, str, Any], tuple[Any, ...]] = scope["opening"]
    return made


_opening_values = _opening_maker()


def allocate_event_ids(conn: Connection, n: int) -> list[int]:
    """``n`` fresh event ids, so the projection can name each claim's latest event without reading back."""
    if n == 0:
        return []
    if conn.dialect.name == "sqlite":  # the write lock is held (BEGIN IMMEDIATE): max(id) is ours until commit
        start = int(conn.execute(_MAX_EVENT_ID).scalar_one()) + 1
        return list(range(start, start + n))
    # The sequence looked up once, not per row: pg_get_serial_sequence in the select list cost ~10 us per id.
    ids = conn.exec_driver_sql("SELECT array_agg(nextval(q.s)) FROM (SELECT pg_get_serial_sequence('claim_events', "
                               "'id')::regclass AS s) q, generate_series(1, %s)", (n,)).scalar_one()
    return [int(i) for i in ids]


def insert_new(conn: Connection, cipher: FieldCipher, submission_id: int, items: Sequence[NewClaim],
               now: datetime | None = None) -> list[int]:
    """Insert claims with their first event (received -> queued/held) in the caller's transaction."""
    return insert_prepared(conn, submission_id, [(prepare_claim(cipher, item.claim), item.state, item.source_row,
                                                  item.event_data) for item in items], now, cipher=cipher)


def decode(row: RowMapping, cipher: FieldCipher) -> Claim:
    """The full canonical claim of a stored row, personal data decrypted (shown as erased once its key is gone).

    ``row`` comes from ``get_row``/``rows_by_ids``, which join the claim's wrapped keys.
    """
    body = _claim_decoder.decode(row["body"])
    plain = keys_store.open_personal(cipher, row, _aad(row["client_id"], row["creditor_reference"]))
    if plain is None:
        return msgspec.structs.replace(body, debtor=_ERASED, memo=None)
    personal = _personal_decoder.decode(plain)
    return msgspec.structs.replace(body, debtor=personal.debtor, memo=personal.memo)


def existing_references(conn: Connection, client_id: str, references: Iterable[str]) -> dict[str, RowMapping]:
    """Already stored claims among ``references``: reference -> (id, submission_id, source_row).

    Every channel takes text in Unicode's composed form (NFC); a reference stored before it did may be in the
    decomposed form (macOS, some exports). A non-ASCII reference is looked up in that form too and answered
    under the form asked for, so that such a claim sent again is found, never stored a second time."""
    refs = list(set(references))
    decomposed = {d: r for r in refs for d in stored_forms(r) if d != r}
    refs += [d for d in decomposed.keys() - set(refs)]
    found: dict[str, RowMapping] = {}
    if conn.dialect.name == "postgresql":
        # One array parameter for the whole chunk: IN lists of 500 took ~5x longer here (5,000 references).
        if refs:
            rows = conn.execute(_existing_pg(), {"client_id": client_id, "refs": refs}).mappings()
            found.update({r["creditor_reference"]: r for r in rows})
    else:
        for i in range(0, len(refs), 500):  # stay under SQLite's parameter limit
            rows = conn.execute(_EXISTING_SQLITE, {"client_id": client_id, "refs": refs[i:i + 500]}).mappings()
            found.update({r["creditor_reference"]: r for r in rows})
    for d, r in decomposed.items():
        if d in found:
            found.setdefault(r, found[d])
    return found


def current_states(conn: Connection, claim_ids: Sequence[int], *, lock: bool = False) -> dict[int, State]:
    """The state of each claim (its latest event's), read from the projection.

    ``lock``: the rows are held (FOR UPDATE on PostgreSQL, in id order like ``transition``) until the
    transaction ends, so a decision taken on these states is not overtaken by another writer (a partner
    update moving a claim on while a receipt for it is being recorded).
    """
    out: dict[int, State] = {}
    ids = sorted(set(claim_ids)) if lock else list(claim_ids)
    for i in range(0, len(ids), 500):
        q = select(claim_current.c.claim_id, claim_current.c.state).where(
            claim_current.c.claim_id.in_(ids[i:i + 500]))
        if lock and conn.dialect.name == "postgresql":
            q = q.order_by(claim_current.c.claim_id).with_for_update()
        out.update({cid: State(st) for cid, st in conn.execute(q)})
    return out


def transition(conn: Connection, claim_ids: Sequence[int], to: State, actor: Actor, *, kind: str = "transition",
               data: dict[str, Any] | None = None, per_claim: dict[int, dict[str, Any]] | None = None,
               now: datetime | None = None) -> None:
    """Move every claim to ``to`` as ``actor``, all or nothing: one illegal move and nothing is written."""
    if not claim_ids:
        return
    # Locking the projection rows (in id order) serialises concurrent changes of the same claims.
    current = projection.load(conn, claim_ids, lock=True)
    rows, changed = [], []
    when = now or utcnow()
    t = db_time(conn, when)
    for cid in claim_ids:
        if cid not in current:
            raise NotFound(f"no claim {cid}")
        src = State(current[cid]["state"])
        try:
            check_transition(src, to, actor)
        except IllegalTransition as exc:
            raise IllegalTransition(exc.src, exc.dst, exc.actor, exc.reason, claim_id=cid) from None
    event_ids = allocate_event_ids(conn, len(claim_ids))
    for eid, cid in zip(event_ids, claim_ids):
        row = current[cid]
        payload = {**(data or {}), **((per_claim or {}).get(cid) or {})}
        rows.append((eid, cid, row["client_id"], to.value, row["state"], actor.value, kind,
                     dumps(payload) if payload else None, t))
        current[cid] = projection.apply(row, EventFacts(eid, to.value, row["state"], actor.value, kind,
                                                        payload or None, when))
        changed.append(current[cid])
    bulk_insert(conn, claim_events, ("id", *_EVENT_COLUMNS), rows)
    projection.save(conn, changed)


def get_row(conn: Connection, claim_id: int) -> RowMapping:
    row = conn.execute(keys_store.claims_with_keys().where(claims.c.id == claim_id)).mappings().first()
    if row is None:
        raise NotFound(f"no claim {claim_id}")
    return row


def keyed_rows_after(last_id: int, limit: int) -> Any:
    """The next ``limit`` claims after ``last_id`` that still have their key (not erased), for a rebuild."""
    return (keys_store.claims_with_keys().where(claims.c.id > last_id, keys_store.claim_keys.c.claim_id.is_not(None))
            .order_by(claims.c.id).limit(limit))


def rows_by_ids(conn: Connection, claim_ids: Sequence[int]) -> list[RowMapping]:
    """Stored claims in id order."""
    out: list[RowMapping] = []
    ids = sorted(claim_ids)
    for i in range(0, len(ids), 500):
        out.extend(conn.execute(keys_store.claims_with_keys().where(claims.c.id.in_(ids[i:i + 500]))
                                .order_by(claims.c.id)).mappings())
    return out


def sandbox_marks(conn: Connection, claim_ids: Sequence[int]) -> dict[int, bool]:
    """claim id -> whether it is a sandbox claim (docs/sandbox.md), for the ids that exist."""
    out: dict[int, bool] = {}
    ids = sorted(set(claim_ids))
    for i in range(0, len(ids), 500):
        out.update({int(cid): bool(mark) for cid, mark in conn.execute(
            select(claims.c.id, claims.c.sandbox).where(claims.c.id.in_(ids[i:i + 500])))})
    return out


def history(conn: Connection, claim_id: int) -> list[dict[str, Any]]:
    """Every event of a claim, oldest first."""
    rows = conn.execute(select(claim_events).where(claim_events.c.claim_id == claim_id)
                        .order_by(claim_events.c.id)).mappings()
    return [{**r, "data": loads(r["data"])} for r in rows]


def listing(conn: Connection, *, client_id: str | None = None, state: str | None = None,
            submission_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
            due_from: date | None = None, due_to: date | None = None, limit: int = 100,
            offset: int = 0, sandbox: bool = False) -> list[RowMapping]:
    """Claims with their current state and open amount (from the projection), newest first.

    Without ``client_id`` only production claims, or with ``sandbox`` only the sandboxes' (docs/sandbox.md).
    """
    cc = claim_current
    q = (select(claims.c.id, claims.c.client_id, claims.c.creditor_reference, claims.c.submission_id,
                claims.c.source_row, claims.c.partner_id, claims.c.claim_type, claims.c.currency,
                claims.c.principal_minor, cc.c.open_minor, claims.c.invoice_number, claims.c.invoice_date,
                claims.c.due_date, claims.c.created_at, cc.c.state, cc.c.updated_at.label("state_since"),
                cc.c.stage, cc.c.partner_file_number)
         .join(cc, cc.c.claim_id == claims.c.id)
         .order_by(claims.c.created_at.desc(), claims.c.id.desc()))
    conds = _listing_conditions(client_id, state, submission_id, since, until, due_from, due_to, sandbox)
    if conds:
        q = q.where(and_(*conds))
    return list(conn.execute(q.limit(limit).offset(offset)).mappings())


def count_listing(conn: Connection, *, client_id: str | None = None, state: str | None = None,
                  submission_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
                  due_from: date | None = None, due_to: date | None = None, sandbox: bool = False) -> int:
    """How many claims ``listing`` would page through (the projection's state, no walk of the event log)."""
    q = select(func.count()).select_from(claims.join(claim_current, claim_current.c.claim_id == claims.c.id))
    conds = _listing_conditions(client_id, state, submission_id, since, until, due_from, due_to, sandbox)
    return int(conn.execute(q.where(and_(*conds)) if conds else q).scalar_one())


def _listing_conditions(client_id: str | None, state: str | None, submission_id: int | None,
                        since: datetime | None, until: datetime | None, due_from: date | None,
                        due_to: date | None, sandbox: bool = False) -> list[Any]:
    conds: list[Any] = []
    if client_id:
        conds.append(claims.c.client_id == client_id)
    else:  # every client: production only, or only the sandboxes when asked (docs/sandbox.md)
        conds.append(claims.c.sandbox == sandbox)
    if state:
        conds.append(or_(*(claim_current.c.state == s for s in state.split(","))))
    if submission_id is not None:
        conds.append(claims.c.submission_id == submission_id)
    if since:
        conds.append(claims.c.created_at >= since)
    if until:
        conds.append(claims.c.created_at < until)
    if due_from:
        conds.append(claims.c.due_date >= due_from)
    if due_to:
        conds.append(claims.c.due_date <= due_to)
    return conds


def annotate(conn: Connection, claim_id: int, actor: Actor, kind: str, data: dict[str, Any] | None = None,
             now: datetime | None = None) -> int:
    """Append an event that records something (a payment report, a message, labels) without a state change."""
    row = projection.load(conn, [claim_id], lock=True).get(claim_id)
    if row is None:
        raise NotFound(f"no claim {claim_id}")
    when = now or utcnow()
    res = conn.execute(claim_events.insert().values(
        claim_id=claim_id, client_id=row["client_id"], state=row["state"], from_state=row["state"],
        actor=actor.value, kind=kind, data=dumps(data) if data else None, created_at=when)
        .returning(claim_events.c.id))
    event_id = int(res.scalar_one())
    projection.save(conn, [projection.apply(row, EventFacts(event_id, row["state"], row["state"], actor.value, kind,
                                                            data or None, when))])
    return event_id


def current(conn: Connection, claim_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The claim's projection row: state, stage, partner file number, case account in minor units.

    ``lock``: held until the transaction ends (PostgreSQL), for a check that a write depends on.
    """
    row = projection.load(conn, [claim_id], lock=lock).get(claim_id)
    if row is None:
        raise NotFound(f"no claim {claim_id}")
    return row
