"""Delivery's reads and writes of claims, a whole batch at a time.

``claims.transition`` is the general path: it re-reads each claim's full projection row, folds the
event in Python (``projection.apply``) and writes every column back. A batch's delivery moves
(queued -> delivering, delivering -> handed_over or failed) change only a few columns and the
dispatcher already holds the claims' rows locked with their states read, so ``advance`` writes the
same events and the same projection values from those states with one event insert and one
projection statement. Kinds that book money or close a claim still go through ``claims.transition``.

``lock`` reads what the dispatcher decides on (state, client, currency, sandbox mark, whether the account
holds direct payments) in one locked read; ``fetch_claims`` and ``decode_each`` read a batch's claims as
plain rows and decrypt and decode them (the same values as ``claims.decode``) without a mapping object per
row; ``direct_payments`` reads the payments the client reported that only the batch can tell the partner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import Connection

from gateway.crypto import envelope
from gateway.crypto.fieldcrypt import FieldCipher
from gateway.domain.lifecycle import TERMINAL, Actor, State, check_transition
from gateway.domain.model import Claim, Debtor, Payment
from gateway.errors import IllegalTransition, KeyStoreError, NotFound
from gateway.store import claims as claim_store
from gateway.store import projection
from gateway.store.schema import claim_current, claim_events
from gateway.store.sql import bulk_insert, db_time, dumps, loads, utcnow

_CHUNK = 500  # ids per statement on SQLite (PostgreSQL takes one array)
# Results are taken with fetchall (one driver call); iterating a result fetches row by row.
_EVENT_COLUMNS = ("id", "claim_id", "client_id", "state", "from_state", "actor", "kind", "data", "created_at")


class Locked(NamedTuple):
    """A claim as the dispatcher decides on it: its projection's state and client, its stored client,
    currency and sandbox mark, and whether its account holds direct payments."""

    state: str
    client_id: str  # claim_current's (what its events carry)
    claim_client_id: str  # claims' (what a batch is grouped by)
    currency: str
    sandbox: bool
    # paid_direct_minor > 0: payments the client received (at intake, or reported since); only such a claim
    # can have reported payments its batch must carry (``direct_payments``)
    paid_direct: bool = False


_LOCK_SQLITE = ("SELECT cc.claim_id, cc.state, cc.client_id, c.client_id, c.currency, c.sandbox, "
                "cc.paid_direct_minor FROM claim_current cc JOIN claims c ON c.id = cc.claim_id "
                "WHERE cc.claim_id IN ({marks})")
# FOR UPDATE OF the projection only: claims rows are append-only, and locking them would also block
# every insert that references them (foreign keys take KEY SHARE).
_LOCK_PG = ("SELECT cc.claim_id, cc.state, cc.client_id, c.client_id, c.currency, c.sandbox, "
            "cc.paid_direct_minor FROM claim_current cc JOIN claims c ON c.id = cc.claim_id "
            "WHERE cc.claim_id = ANY(%s::bigint[]) "
            "ORDER BY cc.claim_id FOR UPDATE OF cc")


def lock(conn: Connection, claim_ids: Sequence[int]) -> dict[int, Locked]:
    """The claims that exist among ``claim_ids``, their projection rows held until the transaction ends.

    Held like ``claims.current_states(lock=True)``: FOR UPDATE in id order on PostgreSQL; on SQLite the
    write transaction already excludes every other writer.
    """
    ids = sorted(set(claim_ids))
    out: dict[int, Locked] = {}
    if not ids:
        return out
    if conn.dialect.name == "postgresql":
        rows: Any = conn.exec_driver_sql(_LOCK_PG, (ids,)).fetchall()
        out = {r[0]: Locked(r[1], r[2], r[3], r[4], bool(r[5]), r[6] > 0) for r in rows}
        return out
    for i in range(0, len(ids), _CHUNK):
        part = ids[i:i + _CHUNK]
        rows = conn.exec_driver_sql(_LOCK_SQLITE.format(marks=", ".join("?" * len(part))), tuple(part)).fetchall()
        out.update({r[0]: Locked(r[1], r[2], r[3], r[4], bool(r[5]), r[6] > 0) for r in rows})
    return out


def advance(conn: Connection, claim_ids: Sequence[int], locked: Mapping[int, Locked], to: State, actor: Actor, *,
            kind: str, data: dict[str, Any] | None = None, per_claim: dict[int, dict[str, Any]] | None = None,
            now: datetime | None = None) -> None:
    """Move every claim to ``to``, all or nothing, writing what ``claims.transition`` writes.

    ``locked`` holds the claims' states as read by ``lock`` in this transaction (so still current).
    """
    if not claim_ids:
        return
    if to in TERMINAL or kind in projection.BOOKINGS or kind == "intake" or len(set(claim_ids)) < len(claim_ids):
        # a closing or a booking changes the case account, and a claim named twice moves twice: the general fold
        claim_store.transition(conn, claim_ids, to, actor, kind=kind, data=data, per_claim=per_claim, now=now)
        return
    checked: set[str] = set()
    for cid in claim_ids:
        facts = locked.get(cid)
        if facts is None:
            raise NotFound(f"no claim {cid}")
        if facts.state not in checked:
            try:
                check_transition(State(facts.state), to, actor)
            except IllegalTransition as exc:
                raise IllegalTransition(exc.src, exc.dst, exc.actor, exc.reason, claim_id=cid) from None
            checked.add(facts.state)
    when = now or utcnow()
    common = dict(data or {})
    common_text = dumps(common) if common else None
    own = per_claim or {}
    base_ref = _text(common.get("partner_reference"), 128)
    base_stage = _text(common.get("stage"), 32)
    # per claim, in the order given: event data, partner file number, stage (None: the column keeps its
    # value), as projection.apply sets them
    texts: list[str | None] = []
    refs: list[str | None] = []
    stages: list[str | None] = []
    for cid in claim_ids:
        extra = own.get(cid)
        if extra:
            payload = {**common, **extra}
            texts.append(dumps(payload))
            refs.append(_text(payload.get("partner_reference"), 128))
            stages.append(_text(payload.get("stage"), 32))
        else:
            texts.append(common_text)
            refs.append(base_ref)
            stages.append(base_stage)
    move = _Move(to.value, actor.value, kind, when, news=actor is not Actor.CLIENT,
                 with_ref=any(r is not None for r in refs), with_stage=any(s is not None for s in stages))
    if conn.dialect.name == "postgresql":
        _advance_pg(conn, claim_ids, locked, move, texts, refs, stages)
    else:
        _advance_sqlite(conn, claim_ids, locked, move, texts, refs, stages)


def _text(value: Any, limit: int) -> str | None:
    # projection.apply: a truthy value, as text, cut to the column's length
    return str(value)[:limit] if value else None


class _Move(NamedTuple):
    to: str
    actor: str
    kind: str
    when: datetime
    news: bool  # the client did not cause it: changed_event_id moves too
    with_ref: bool  # some claim gets a partner file number
    with_stage: bool


_UPDATED_AT = claim_current.c.updated_at


def _updated_at(conn: Connection, when: datetime) -> Any:
    # the column's own bind conversion (naive UTC text on SQLite), as projection.save stored it
    dialect = conn.dialect
    proc = _UPDATED_AT.type.dialect_impl(dialect).bind_processor(dialect)
    return proc(when) if proc is not None else when


def _advance_sqlite(conn: Connection, claim_ids: Sequence[int], locked: Mapping[int, Locked], move: _Move,
                    texts: list[str | None], refs: list[str | None], stages: list[str | None]) -> None:
    """The events with ids taken in claim order (the write lock is held), then the projection, each one executemany."""
    t = db_time(conn, move.when)
    event_ids = claim_store.allocate_event_ids(conn, len(claim_ids))
    bulk_insert(conn, claim_events, _EVENT_COLUMNS, [
        (eid, cid, locked[cid].client_id, move.to, locked[cid].state, move.actor, move.kind, text, t)
        for eid, cid, text in zip(event_ids, claim_ids, texts)])
    sets = ["state = ?", "updated_at = ?", "last_event_id = ?"]
    if move.news:
        sets.append("changed_event_id = ?")
    if move.with_ref:
        sets.append("partner_file_number = COALESCE(?, partner_file_number)")
    if move.with_stage:
        sets.append("stage = COALESCE(?, stage)")
    # projection.save wrote every column back through SQLAlchemy, which stores a time with its
    # microseconds always; ingest's bulk insert stores one that has none without them. Keep that.
    sets.append("received_at = CASE WHEN length(received_at) = 19 THEN received_at || '.000000' "
                "ELSE received_at END")
    updated = _updated_at(conn, move.when)
    params = []
    for cid, eid, ref, stage in zip(claim_ids, event_ids, refs, stages):
        row: list[Any] = [move.to, updated, eid]
        if move.news:
            row.append(eid)
        if move.with_ref:
            row.append(ref)
        if move.with_stage:
            row.append(stage)
        row.append(cid)
        params.append(tuple(row))
    conn.exec_driver_sql(f"UPDATE claim_current SET {', '.join(sets)} WHERE claim_id = ?", params)


def _advance_pg(conn: Connection, claim_ids: Sequence[int], locked: Mapping[int, Locked], move: _Move,
                texts: list[str | None], refs: list[str | None], stages: list[str | None]) -> None:
    """Events and projection in one statement: the INSERT's RETURNING feeds the UPDATE.

    The event ids come from the column's sequence in the order of the claims given (the insert reads
    the claims sorted by their position), as ``allocate_event_ids`` hands them out. A value that is the
    same for every claim (mostly all but the id) goes as one parameter instead of an array: dumping
    arrays of text is what the client spends its time on here.
    """
    params: dict[str, Any] = {"ids": list(claim_ids), "to": move.to, "actor": move.actor, "kind": move.kind,
                              "at": db_time(conn, move.when), "updated": _updated_at(conn, move.when)}
    arrays, columns = ["%(ids)s::bigint[]"], ["c"]
    values: dict[str, str] = {}
    per_claim: dict[str, list[str | None]] = {"client": [locked[c].client_id for c in claim_ids],
                                              "f": [locked[c].state for c in claim_ids], "d": texts}
    if move.with_ref:
        per_claim["r"] = refs
    if move.with_stage:
        per_claim["s"] = stages
    for name, column in per_claim.items():
        first = column[0]
        if all(v == first for v in column):  # the same text for every claim: one parameter
            params[name] = first
            values[name] = f"%({name})s::text"
        else:
            params[name] = column
            arrays.append(f"%({name})s::text[]")
            columns.append(name)
            values[name] = f"u.{name}"
    sets = ["state = %(to)s", "updated_at = %(updated)s", "last_event_id = ev.id"]
    if move.news:
        sets.append("changed_event_id = ev.id")
    if move.with_ref:
        sets.append(f"partner_file_number = COALESCE({values['r']}, cc.partner_file_number)")
    if move.with_stage:
        sets.append(f"stage = COALESCE({values['s']}, cc.stage)")
    sql = (f"WITH u AS (SELECT * FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({', '.join(columns)}, n)), "
           "ev AS (INSERT INTO claim_events (claim_id, client_id, state, from_state, actor, kind, data, created_at) "
           f"SELECT u.c, {values['client']}, %(to)s, {values['f']}, %(actor)s, %(kind)s, {values['d']}, %(at)s "
           "FROM u ORDER BY u.n RETURNING id, claim_id) "
           f"UPDATE claim_current AS cc SET {', '.join(sets)} FROM ev JOIN u ON u.c = ev.claim_id "
           "WHERE cc.claim_id = ev.claim_id")
    conn.exec_driver_sql(sql, params)


# -- reading a batch's claims ----------------------------------------------------------------
_READ_COLUMNS = ("c.id, c.client_id, c.creditor_reference, c.currency, c.body, c.personal, "
                 "k.wrapped_dek, k.key_id, ck.wrapped_kek "
                 "FROM claims c LEFT OUTER JOIN claim_keys k ON k.claim_id = c.id "
                 "LEFT OUTER JOIN client_keys ck ON ck.client_id = k.client_id AND ck.key_id = k.key_id ")
_READ_SQLITE = "SELECT " + _READ_COLUMNS + "WHERE c.id IN ({marks}) ORDER BY c.id"
_READ_PG = "SELECT " + _READ_COLUMNS + "WHERE c.id = ANY(%s::bigint[]) ORDER BY c.id"

_claim_decoder = msgspec.json.Decoder(Claim)
_ERASED = Debtor(last_name=envelope.ERASED_NAME)


class _Personal(msgspec.Struct, omit_defaults=True):
    # what claims.prepare_claim encrypts
    debtor: Debtor
    memo: str | None = None


_personal_decoder = msgspec.json.Decoder(_Personal)


class ClaimRow(NamedTuple):
    id: int
    claim: Claim | None  # None: it could not be read (``error`` says why)
    error: str | None


# id, client, reference, currency, body, personal, wrapped DEK, its client key's id, wrapped client key
StoredRow = tuple[Any, ...]


def fetch_claims(conn: Connection, claim_ids: Sequence[int]) -> list[StoredRow]:
    """The stored rows (with their wrapped keys) among ``claim_ids``, in id order; ``decode_each`` opens them."""
    ids = sorted(claim_ids)
    if ids and conn.dialect.name == "postgresql":
        return list(conn.exec_driver_sql(_READ_PG, (ids,)).fetchall())
    rows: list[StoredRow] = []
    for i in range(0, len(ids), _CHUNK):
        part = ids[i:i + _CHUNK]
        rows.extend(conn.exec_driver_sql(_READ_SQLITE.format(marks=", ".join("?" * len(part))),
                                         tuple(part)).fetchall())
    return rows


_WITH_DOCUMENTS_SQLITE = "SELECT DISTINCT claim_id FROM documents WHERE claim_id IN ({marks})"
_WITH_DOCUMENTS_PG = "SELECT DISTINCT claim_id FROM documents WHERE claim_id = ANY(%s::bigint[])"


def with_documents(conn: Connection, claim_ids: Sequence[int]) -> list[int]:
    """The claims among ``claim_ids`` that have stored documents (most batches have none to read)."""
    ids = sorted(set(claim_ids))
    if not ids:
        return []
    if conn.dialect.name == "postgresql":
        return sorted(int(r[0]) for r in conn.exec_driver_sql(_WITH_DOCUMENTS_PG, (ids,)))
    out: list[int] = []
    for i in range(0, len(ids), _CHUNK):
        part = ids[i:i + _CHUNK]
        out.extend(int(r[0]) for r in conn.exec_driver_sql(
            _WITH_DOCUMENTS_SQLITE.format(marks=", ".join("?" * len(part))), tuple(part)))
    return sorted(out)


# The client's direct payments (claim_ops.report_payment) that no request to the partner carries: those
# reported while the partner did not have the claim (held, queued), which only its batch can tell it. A
# report forwarded as a request has its outbox row (key ``report_payment:<claim>:<event>``, written in the
# event's transaction) and reaches the partner that way, after the claim's receipt; never both ways.
_DIRECT_WHERE = ("e.kind = 'payment_reported' AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.idempotency_key = "
                 "'report_payment:' || CAST(e.claim_id AS TEXT) || ':' || CAST(e.id AS TEXT)) "
                 "ORDER BY e.claim_id, e.id")
_DIRECT_SQLITE = "SELECT e.claim_id, e.data FROM claim_events e WHERE e.claim_id IN ({marks}) AND " + _DIRECT_WHERE
_DIRECT_PG = "SELECT e.claim_id, e.data FROM claim_events e WHERE e.claim_id = ANY(%s::bigint[]) AND " + _DIRECT_WHERE


def direct_payments(conn: Connection, currencies: Mapping[int, str]) -> dict[int, list[Payment]]:
    """The direct payments of each claim of ``currencies`` (claim id -> its currency) that only its batch can
    bring the partner, in the order reported: one read for all of them (pass only claims whose account shows
    direct payments).

    An amount is taken as the case account booked it (``projection.apply``): one the fold would not book
    (not a positive amount in the claim's currency) is left out, so the batch and the account agree.
    """
    ids = sorted(currencies)
    if not ids:
        return {}
    rows: list[Any]
    if conn.dialect.name == "postgresql":
        rows = list(conn.exec_driver_sql(_DIRECT_PG, (ids,)).fetchall())
    else:
        rows = []
        for i in range(0, len(ids), _CHUNK):
            part = ids[i:i + _CHUNK]
            rows.extend(conn.exec_driver_sql(_DIRECT_SQLITE.format(marks=", ".join("?" * len(part))),
                                             tuple(part)).fetchall())
    out: dict[int, list[Payment]] = {}
    for cid, text in rows:
        data = loads(text) if text else {}
        amount = projection.booked_amount(data, currencies[cid])
        day = data.get("date")
        if amount is None or not isinstance(day, str):
            continue
        try:
            on = date.fromisoformat(day)
        except ValueError:
            continue
        out.setdefault(cid, []).append(Payment(amount=amount, date=on))
    return out


def currency_of(row: StoredRow) -> str:
    return str(row[3])


def decode_each(cipher: FieldCipher, rows: Sequence[StoredRow]) -> Iterator[ClaimRow]:
    """Each row's claim decoded as ``claims.decode`` does, one at a time as it is asked for.

    A claim whose stored value does not open or decode comes back with the reason (the error's type and
    its message, which never quotes the value) instead of failing the others. Decoding lazily lets the
    caller render and drop each claim before the next exists: a batch of decoded claims held at once
    kept the cyclic garbage collector busy (~6 us per claim on the delivery bench).
    """
    for cid, client_id, reference, _, body, personal, wrapped_dek, kek_id, wrapped_kek in rows:
        try:
            claim = _decode(cipher, cid, client_id, reference, body, personal, wrapped_dek, kek_id, wrapped_kek)
        except (KeyStoreError, msgspec.DecodeError) as exc:  # this claim's stored value, not the batch's
            yield ClaimRow(cid, None, f"claim {cid}: {type(exc).__name__}: {exc}")
        else:
            yield ClaimRow(cid, claim, None)


def _decode(cipher: FieldCipher, cid: int, client_id: str, reference: str, body: str, personal: Any,
            wrapped_dek: Any, kek_id: str | None, wrapped_kek: Any) -> Claim:
    # claims.decode with keys_store.open_personal, on the row's plain values
    claim = _claim_decoder.decode(body)
    blob = bytes(personal)
    aad = f"claim:{client_id}\x1f{reference}".encode()
    if not envelope.is_envelope(blob):
        plain: bytes | None = cipher.decrypt(blob, aad)  # stored before migration 0009 rewrote every value
    elif wrapped_dek is None or wrapped_kek is None or kek_id is None:
        plain = None
    else:
        kek = cipher.client_kek(client_id, kek_id, bytes(wrapped_kek))
        dek = envelope.unwrap(kek, bytes(wrapped_dek), envelope.dek_aad(cid, client_id))
        plain = envelope.open_sealed(dek, blob, aad)
    if plain is None:
        return msgspec.structs.replace(claim, debtor=_ERASED, memo=None)
    p = _personal_decoder.decode(plain)
    return msgspec.structs.replace(claim, debtor=p.debtor, memo=p.memo)
