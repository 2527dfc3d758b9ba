"""Storing one prepared chunk of an ingest: duplicate and resend checks, claims, fingerprints, outbox, progress.

It runs in the ingesting process, or in the worker process that prepared the chunk when a large file is
spread over processes (``ingest_run``). Workers store their chunks strictly in file order, one at a time
(``ChunkTurns``), so every chunk sees the ones before it (duplicates "earlier in this file", the submission's
``progress_row``, claim ids rising with the rows) exactly as when one process stores them all: the result is
the same either way. What a worker hands back is small: the rows' outcomes, not their prepared columns.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from multiprocessing.context import SpawnContext
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, RowMapping

from gateway.config import GatewayConfig
from gateway.crypto.fieldcrypt import FieldCipher
from gateway.domain import findings as codes
from gateway.domain.findings import Finding, Outcome, Severity, outcome_of, row_outcome
from gateway.domain.lifecycle import State
from gateway.domain.model import Claim
from gateway.services.batching import enqueue_deliveries
from gateway.mapping.spec import MappingSpec
from gateway.readers.base import SourceRow
from gateway.services import ingest_prepare
from gateway.services.ingest_prepare import PreparedRow
from gateway.services.node import Lease, renew_lease
from gateway.store import claims as claim_store
from gateway.store import fingerprints
from gateway.store import submissions as sub_store
from gateway.store.claims import PreparedClaim
from gateway.store.db import read_tx, write_tx
from gateway.store.sql import dumps

MAX_STORED_FINDINGS = 10_000  # per submission in the database; the ack file has every finding

NewItem = tuple[PreparedClaim, State, int | None, dict[str, Any] | str | None]


@dataclass(frozen=True)
class StoreContext:
    """What storing a chunk needs to know of its submission (picklable: handed to worker processes)."""

    client_id: str
    submission_id: int | None  # None: a dry run (checks, nothing stored)
    submission_ref: str | None
    reference_column: str | None
    progress: int  # rows up to here were stored by an earlier run of this submission


@dataclass
class StoredChunk:
    """A stored chunk's answer: its rows without their prepared columns, and where each row went."""

    rows: list[PreparedRow]  # in file order, findings added here (duplicates, no partner) included
    stored: dict[int, Any]   # source row -> claim id
    stored_ok: set[int]      # source rows whose claim is in the store (new or from an earlier run)
    findings: int            # findings written to the submission's table


class ChunkStore:
    """Stores the chunks of one submission through ``engine`` (the caller's or a worker's own)."""

    def __init__(self, ctx: StoreContext, engine: Engine, cipher: FieldCipher, now: Callable[[], datetime],
                 fence: Callable[[Connection], None]) -> None:
        self.ctx, self.engine, self.cipher, self.now, self.fence = ctx, engine, cipher, now, fence
        # dumps({"submission": ..., "row": N}) for the common row, without a dict and an encode per row
        self._data_head = dumps({"submission": ctx.submission_ref})[:-1] + ',"row":'

    def store(self, chunk_no: int, chunk: list[PreparedRow], findings_room: int) -> StoredChunk:
        """Check and store one chunk in one transaction; ``findings_room``: how many findings may still be kept."""
        ctx = self.ctx
        candidates = [p for p in chunk if p.claim is not None]
        sid = ctx.submission_id
        with read_tx(self.engine) as conn:
            existing = claim_store.existing_references(conn, ctx.client_id, [p.claim[1] for p in candidates
                                                                             if p.claim is not None])
            differs = self._compare_resends(conn, candidates, existing, sid)
        seen: set[str] = set()
        new: list[tuple[PreparedRow, NewItem]] = []
        queued, data_head = State.QUEUED, self._data_head
        own: dict[int, int] = {}  # source row -> claim id stored by an earlier run of this submission
        stored_ok: set[int] = set()
        for p in candidates:
            assert p.claim is not None
            ref = p.claim[1]
            prior = existing.get(ref)
            if prior is not None and prior["submission_id"] == sid and prior["source_row"] == p.row:
                own[p.row] = prior["id"]
                stored_ok.add(p.row)
                continue
            if prior is not None and differs.get(p.row):
                p.findings.append(Finding(
                    code=codes.CONFLICTING_RESEND, field="creditor_reference", row=p.row,
                    column=ctx.reference_column, message=f"reference '{ref}' was already submitted as claim "
                    f"{prior['id']} with different data in: {', '.join(differs[p.row])}; nothing was stored"))
                continue
            if prior is not None or ref in seen:
                p.findings.append(Finding(
                    code=codes.DUPLICATE_REFERENCE, field="creditor_reference", row=p.row,
                    column=ctx.reference_column, message=f"reference '{ref}' was already submitted"
                    + (f" with the same data (claim {prior['id']})" if prior is not None
                       else " earlier in this file")))
                continue
            seen.add(ref)
            stored_ok.add(p.row)
            if p.no_partner:
                p.findings.append(Finding(code=codes.NO_PARTNER, severity=Severity.HOLD, row=p.row,
                                          message="no partner is configured for this claim: held for the operator"))
            if not p.findings and p.sheet is None and p.xpath is None:  # the common row: its event data as text
                new.append((p, (p.claim, queued, p.row, f"{data_head}{p.row}}}")))
                continue
            state = State.HELD if p.findings and outcome_of(p.findings) == Outcome.HELD else State.QUEUED
            data: dict[str, Any] = {"submission": ctx.submission_ref, "row": p.row}
            if p.sheet is not None:
                data["sheet"] = p.sheet
            if p.xpath is not None:
                data["xpath"] = p.xpath
            if p.findings:
                held_codes = [f.code for f in p.findings if f.severity is Severity.HOLD]
                if held_codes:
                    data["codes"] = held_codes
            new.append((p, (p.claim, state, p.row, data)))
        last_row = chunk[-1].row
        written = 0
        if sid is not None and last_row > ctx.progress:
            ids, written = self._store(sid, chunk_no, new, chunk, last_row, findings_room)
        else:
            ids = [None] * len(new)
        stored: dict[int, Any] = {p.row: cid for (p, _), cid in zip(new, ids)}
        stored.update(own)
        return StoredChunk(chunk, stored, stored_ok, written)

    def _compare_resends(self, conn: Connection, candidates: list[PreparedRow], existing: dict[str, RowMapping],
                         sid: int | None) -> dict[int, list[str]]:
        """Source row -> the fields in which it differs from the stored claim of its reference ([] = same)."""
        resends: list[tuple[int, int, Claim]] = []
        for p in candidates:
            assert p.claim is not None
            prior = existing.get(p.claim[1])
            if prior is not None and not (prior["submission_id"] == sid and prior["source_row"] == p.row):
                resends.append((p.row, prior["id"], fingerprints.claim_of_prepared(self.cipher, p.claim)))
        found = fingerprints.compare_resends(conn, self.cipher, [
            (cid, claim, fingerprints.fingerprint(self.cipher, claim)) for _, cid, claim in resends])
        return {row: fields for (row, _, _), fields in zip(resends, found)}

    def _store(self, sid: int, chunk_no: int, new: list[tuple[PreparedRow, NewItem]], chunk: list[PreparedRow],
               last_row: int, findings_room: int) -> tuple[list[Any], int]:
        now = self.now()
        cipher = self.cipher
        prints = [p.fingerprint or fingerprints.fingerprint(cipher, fingerprints.claim_of_prepared(cipher, cols))
                  for p, (cols, _, _, _) in new]
        with write_tx(self.engine) as conn:
            self.fence(conn)  # a node that lost the client's lease must not commit this chunk
            ids = claim_store.insert_prepared(conn, sid, [n for _, n in new], now=now, cipher=cipher)
            fingerprints.insert(conn, zip(ids, prints))
            # Prepared columns: [2] is the partner, [4] the currency (store/claims.py prepare_claim).
            enqueue_deliveries(conn, prefix=f"deliver:{sid}", number=chunk_no, client_id=self.ctx.client_id,
                               members=[(cid, cols[2], cols[4]) for (_, (cols, state, _, _)), cid in zip(new, ids)
                                        if state is State.QUEUED and cols[2]],
                               payload={"submission_id": sid}, now=now)
            rows = [(p.row, p.reference, row_outcome(p.findings), f) for p in chunk if p.findings for f in p.findings]
            rows = rows[:max(0, findings_room)]
            sub_store.record_findings(conn, sid, rows)
            sub_store.set_progress(conn, sid, last_row)
        return ids, len(rows)


class ChunkTurns:
    """Chunk numbers stored in order across worker processes: a worker stores chunk n only after n - 1.

    ``abort`` stops every chunk that has not started storing (the ingest is stopping or a chunk failed):
    a later chunk must never commit after an earlier one did not, or the submission's progress would skip
    rows. ``findings`` counts the findings kept so far (the per-submission cap holds across workers).

    Plain shared values, polled, and no lock or condition: a worker can be killed at any moment (the OOM
    killer, the kernel after its parent died), and a multiprocessing Condition whose sleeper or lock holder
    died blocks every later ``notify`` for good. Each value has one writer at a time (the worker whose turn it
    is; ``aborted`` only ever goes from 0 to 1), so no lock is needed; a poll every few milliseconds is nothing
    against storing a chunk.
    """

    POLL = 0.002  # seconds between looks at the turn (at most 10x longer while it stays the same)
    PARENT_CHECK = 1.0  # seconds between checks that the ingesting process is still there

    def __init__(self, ctx: SpawnContext, first: int, findings: int) -> None:
        self.next = ctx.Value("q", first, lock=False)
        self.aborted = ctx.Value("b", 0, lock=False)
        self.findings = ctx.Value("q", findings, lock=False)

    def wait(self, chunk_no: int, parent: int) -> bool:
        """Block until it is ``chunk_no``'s turn (True) or the run was aborted (False)."""
        pause, checked = self.POLL, time.monotonic()
        while not self.aborted.value and self.next.value != chunk_no:
            time.sleep(pause)
            pause = min(pause * 1.5, self.POLL * 10)
            if time.monotonic() - checked > self.PARENT_CHECK:
                checked = time.monotonic()
                if os.getppid() != parent:  # the ingesting process is gone: nobody will read this chunk
                    self.aborted.value = 1
        return not self.aborted.value

    def done(self, chunk_no: int, findings: int) -> None:
        self.findings.value += findings  # before the turn moves on: the next chunk reads it
        self.next.value = chunk_no + 1

    def abort(self) -> None:
        self.aborted.value = 1


# The worker side: each worker process prepares a chunk, waits for its turn, stores it, hands back the outcome.

_STORE: tuple[ChunkStore, ChunkTurns, int] | None = None


def init_worker(config: GatewayConfig, spec: MappingSpec, header: list[str], header_row: int, file: str,
                today: date, ctx: StoreContext, lease: Lease | None, turns: ChunkTurns, parent: int) -> None:
    """Process-pool initializer: this worker's Preparer and its own database engine, built once."""
    global _STORE
    from gateway.bootstrap import make_app_engine

    _die_with(parent)
    ingest_prepare.init_worker(config, spec, header, header_row, file, ctx.client_id, today)
    preparer = ingest_prepare.worker()
    engine = make_app_engine(config)

    def fence(conn: Connection) -> None:
        if lease is not None:
            renew_lease(conn, lease, _now())

    _STORE = (ChunkStore(ctx, engine, preparer.cipher, _now, fence), turns, parent)
    gc.set_threshold(10_000, 50, 100)  # see ingest_run._fewer_collections


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the ingesting process dies (Linux), so that no chunk is stored after
    its parent is gone: a restarted node resuming the submission never races an orphan writing the same rows."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: ChunkTurns.wait still notices a lost parent between chunks
        pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# A chunk's rows travel to a worker as msgpack, not pickle: a tenth of the encoding and less than half of the
# decoding CPU per row (2.3 + 3.4 -> 0.2 + 1.3 us), the same values.
_rows_encoder = msgspec.msgpack.Encoder()
_rows_decoder = msgspec.msgpack.Decoder(list[SourceRow])


def encode_rows(rows: list[SourceRow]) -> bytes:
    """A chunk as ``work`` takes it."""
    return _rows_encoder.encode(rows)


def decode_rows(data: bytes) -> list[SourceRow]:
    return _rows_decoder.decode(data)


def work(chunk_no: int, data: bytes) -> StoredChunk | None:
    """Process-pool task: prepare chunk ``chunk_no`` (``encode_rows``), store it in its turn; None if aborted."""
    assert _STORE is not None, "init_worker did not run"
    store, turns, parent = _STORE
    prepared = ingest_prepare.worker().chunk(decode_rows(data))
    if not turns.wait(chunk_no, parent):
        return None
    try:
        done = store.store(chunk_no, prepared, MAX_STORED_FINDINGS - turns.findings.value)
    except BaseException:
        turns.abort()  # no later chunk may commit after this one did not
        raise
    turns.done(chunk_no, done.findings)
    # The parent needs the outcome of each row, not its prepared columns (most of the bytes).
    done.rows = [p._replace(claim=None, fingerprint=None) for p in done.rows]
    return done
