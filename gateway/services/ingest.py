"""Ingest one client file: durable submission first, then read, map, validate, store in chunks, ack.

Crash safety: the submission row and the encrypted raw bytes commit before any row is read. Rows
are then stored in chunks; each chunk's claims, first events, findings, outbox rows and the
submission's ``progress_row`` commit in one transaction. Re-running an unfinished submission
(``resume``) maps every row again (deterministic: same mapping, same received date) and inserts
only rows after ``progress_row``, so nothing is lost or stored twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import RowMapping

from gateway.bootstrap import App
from gateway.domain import findings as codes
from gateway.domain.findings import Finding, Outcome, Severity, outcome_of
from gateway.domain.lifecycle import State
from gateway.domain.model import to_minor
from gateway.domain.rules import validate_claim
from gateway.errors import GatewayError, InputError
from gateway.mapping.engine import MappedRow, RowMapper, compile_mapping
from gateway.mapping.spec import MappingSpec, load_mapping
from gateway.readers.base import SourceRow, open_reader
from gateway.services.ack import AckWriter
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store import submissions as sub_store
from gateway.store.claims import NewClaim
from gateway.store.db import read_tx, write_tx

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
MAX_RESULTS = 50_000  # per-row results kept in memory for the caller; the ack file has every row
MAX_STORED_FINDINGS = 10_000  # per submission in the database; the ack file has every finding


@dataclass
class RowResult:
    row: int | None
    reference: str | None
    outcome: str
    claim_id: int | None = None
    findings: list[Finding] = field(default_factory=list)


@dataclass
class IngestResult:
    submission: str | None
    status: str
    client_id: str
    filename: str
    rows: int = 0
    accepted: int = 0
    held: int = 0
    rejected: int = 0
    total_amount: str = "0"
    currency: str | None = None
    duplicate_of: str | None = None
    ack_path: str | None = None
    error: str | None = None
    dry_run: bool = False
    results: list[RowResult] = field(default_factory=list)
    results_truncated: bool = False


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex digest and size, reading in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk


def ack_path_for(app: App, client_id: str, filename: str) -> Path:
    return app.config.inbox_dir / client_id / "ack" / f"{filename}.ack.csv"


def ingest_file(app: App, path: Path, client_id: str, *, channel: str = "cli", mapping_path: Path | None = None,
                dry_run: bool = False, ack_path: Path | None = None, filename: str | None = None) -> IngestResult:
    """Ingest ``path`` for ``client_id``; a mapping/config problem raises, a bad file yields status failed."""
    app.config.client(client_id)  # unknown client: ConfigError before anything is recorded
    spec = load_mapping(mapping_path or app.config.mapping_file(client_id))
    name = filename or path.name
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    sha, size = sha256_file(path)
    if dry_run:
        return _process(app, spec, path, client_id, name, submission=None, ack=None)
    with write_tx(app.engine) as conn:
        dup = sub_store.find_duplicate(conn, client_id, sha)
        if dup is None:
            sub = sub_store.create(conn, client_id=client_id, channel=channel, filename=name, sha256=sha,
                                   size=size, dedupe=True, received_at=app.now())
            assert sub is not None  # the write lock is held: nobody inserted it since find_duplicate
            sub_store.store_payload(conn, app.cipher, sub["id"], _chunks(path))
    if dup is not None and dup["status"] == "processing":
        # The same bytes again while their submission never finished (a crash): finish it now.
        log.warning("ingest.resume client=%s submission=%s", client_id, dup["reference"])
        return _process(app, spec, path, client_id, name, submission=dup,
                        ack=ack_path or ack_path_for(app, client_id, name))
    if dup is not None:
        log.info("ingest.duplicate client=%s file=%s submission=%s", client_id, name, dup["reference"])
        return IngestResult(submission=None, status="duplicate", client_id=client_id, filename=name,
                            duplicate_of=dup["reference"], ack_path=dup["ack_path"])
    log.info("ingest.received client=%s submission=%s file=%s bytes=%d", client_id, sub["reference"], name, size)
    return _process(app, spec, path, client_id, name, submission=sub,
                    ack=ack_path or ack_path_for(app, client_id, name))


def resume(app: App, submission: RowMapping, path: Path) -> IngestResult:
    """Finish a submission a crash left in ``processing`` (its raw bytes restored to ``path``)."""
    spec = load_mapping(app.config.mapping_file(submission["client_id"]))
    name = submission["filename"] or path.name
    return _process(app, spec, path, submission["client_id"], name, submission=submission,
                    ack=Path(submission["ack_path"]) if submission["ack_path"]
                    else ack_path_for(app, submission["client_id"], name))


def _process(app: App, spec: MappingSpec, path: Path, client_id: str, name: str, *,
             submission: RowMapping | None, ack: Path | None) -> IngestResult:
    result = IngestResult(submission=submission["reference"] if submission else None, status="processing",
                          client_id=client_id, filename=name, dry_run=submission is None,
                          ack_path=str(ack) if ack else None)
    writer: AckWriter | None = None
    try:
        reader = open_reader(path, spec.format)
        try:
            mapper = compile_mapping(spec, reader.header, file=name)
            if ack is not None:
                writer = AckWriter(ack, delimiter=spec.format.delimiter or ";",
                                   reference_column=mapper.column_for("creditor_reference"))
            _Run(app, spec, mapper, client_id, submission, result, writer).run(reader)
        finally:
            reader.close()
    except InputError as exc:
        return _fail(app, result, submission, writer, ack, exc)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    result.status = "completed_with_errors" if result.rejected else "completed"
    if writer is not None:
        writer.commit()
    if submission is not None:
        with write_tx(app.engine) as conn:
            sub_store.finish(conn, submission["id"], status=result.status, counts=_counts(result),
                             ack_path=result.ack_path)
        log.info("ingest.done submission=%s rows=%d accepted=%d held=%d rejected=%d", result.submission,
                 result.rows, result.accepted, result.held, result.rejected)
    return result


def _counts(result: IngestResult) -> sub_store.SubmissionCounts:
    currency = result.currency or "EUR"
    return sub_store.SubmissionCounts(rows=result.rows, accepted=result.accepted, held=result.held,
                                      rejected=result.rejected, currency=result.currency,
                                      total_minor=to_minor(Decimal(result.total_amount), currency))


def _fail(app: App, result: IngestResult, submission: RowMapping | None, writer: AckWriter | None,
          ack: Path | None, exc: GatewayError) -> IngestResult:
    """The file itself is unusable: say so in the ack and on the submission; rows stored so far stay."""
    if writer is not None:
        writer.abort()
    result.status, result.error = "failed", str(exc)
    if ack is not None:
        with AckWriter(ack) as w:
            w.row(getattr(exc, "row", None), None, "failed", None,
                  [Finding(code="input_error", message=str(exc), column=getattr(exc, "column", None))])
            w.commit()
    if submission is not None:
        with write_tx(app.engine) as conn:
            sub_store.finish(conn, submission["id"], status="failed", counts=_counts(result), error=str(exc),
                             ack_path=result.ack_path)
        log.warning("ingest.failed submission=%s error=%s", result.submission, exc)
    return result


@dataclass
class _Pending:
    mapped: MappedRow
    findings: list[Finding]


class _Run:
    """One pass over a file's rows, committing in chunks."""

    def __init__(self, app: App, spec: MappingSpec, mapper: RowMapper, client_id: str,
                 submission: RowMapping | None, result: IngestResult, writer: AckWriter | None) -> None:
        self.app, self.spec, self.mapper, self.client_id = app, spec, mapper, client_id
        self.submission, self.result, self.writer = submission, result, writer
        self.client = app.config.client(client_id)
        self.today = (submission["received_at"] if submission else app.now()).date()
        self.progress = submission["progress_row"] if submission else 0
        self.chunk_size = max(1, app.config.dispatcher.batch_size)
        self.chunk_no = 0
        self.stored_findings = 0
        self.total = Decimal(0)

    def run(self, rows: Iterable[SourceRow]) -> None:
        chunk: list[_Pending] = []
        for src in rows:
            mapped = self.mapper.map_row(src, self.client_id)
            chunk.append(_Pending(mapped, self._validate(mapped)))
            if len(chunk) >= self.chunk_size:
                self._flush(chunk)
                chunk = []
        if chunk:
            self._flush(chunk)
        self.result.total_amount = str(self.total)

    def _validate(self, mapped: MappedRow) -> list[Finding]:
        found = list(mapped.findings)
        claim = mapped.claim
        if claim is None:
            return found
        found.extend(self.mapper.locate(validate_claim(claim, self.today), mapped.row, claim))
        if self.client.hold_all or self.spec.policy.hold_all:
            found.append(Finding(code="awaiting_release", severity=Severity.HOLD, row=mapped.row,
                                 message="held until the client releases it (collection run)"))
        return found

    def _flush(self, chunk: list[_Pending]) -> None:
        self.chunk_no += 1
        candidates = [p for p in chunk if p.mapped.claim is not None and outcome_of(p.findings) != Outcome.REJECTED]
        refs = [p.mapped.claim.creditor_reference for p in candidates if p.mapped.claim]
        sid = self.submission["id"] if self.submission else None
        with read_tx(self.app.engine) as conn:
            existing = claim_store.existing_references(conn, self.client_id, refs)
        seen: set[str] = set()
        new: list[tuple[_Pending, NewClaim]] = []
        own: dict[int, int] = {}  # source row -> claim id stored by an earlier run of this submission
        for p in candidates:
            claim = p.mapped.claim
            assert claim is not None
            ref, prior = claim.creditor_reference, existing.get(claim.creditor_reference)
            if prior is not None and prior["submission_id"] == sid and prior["source_row"] == p.mapped.row:
                own[p.mapped.row] = prior["id"]
                continue
            if prior is not None or ref in seen:
                p.findings.append(Finding(
                    code=codes.DUPLICATE_REFERENCE, field="creditor_reference", row=p.mapped.row,
                    column=self.mapper.column_for("creditor_reference"),
                    message=f"reference '{ref}' was already submitted"
                    + (f" (claim {prior['id']})" if prior is not None else " earlier in this file")))
                continue
            seen.add(ref)
            partner = self.app.router.pick(claim)
            if partner is None:
                p.findings.append(Finding(code=codes.NO_PARTNER, severity=Severity.HOLD, row=p.mapped.row,
                                          message="no partner is configured for this claim: held for the operator"))
            claim = msgspec.structs.replace(claim, partner_id=partner)
            state = State.HELD if outcome_of(p.findings) == Outcome.HELD else State.QUEUED
            data = {"submission": self.result.submission, "row": p.mapped.row}
            held_codes = [f.code for f in p.findings if f.severity is Severity.HOLD]
            if held_codes:
                data["codes"] = held_codes
            new.append((p, NewClaim(claim=claim, state=state, source_row=p.mapped.row, event_data=data)))
        last_row = chunk[-1].mapped.row
        ids = self._store(new, chunk, last_row) if self.submission and last_row > self.progress else [None] * len(new)
        stored = {p.mapped.row: cid for (p, _), cid in zip(new, ids)}
        stored.update(own)
        for p in chunk:
            self._report(p, stored.get(p.mapped.row))

    def _store(self, new: list[tuple[_Pending, NewClaim]], chunk: list[_Pending], last_row: int) -> list[Any]:
        assert self.submission is not None
        sid = self.submission["id"]
        now = self.app.now()
        with write_tx(self.app.engine) as conn:
            ids = claim_store.insert_new(conn, self.app.cipher, sid, [n for _, n in new], now=now)
            by_partner: dict[str, list[int]] = {}
            for (_, n), cid in zip(new, ids):
                if n.state is State.QUEUED and n.claim.partner_id:
                    by_partner.setdefault(n.claim.partner_id, []).append(cid)
            for partner, claim_ids in by_partner.items():
                outbox_store.enqueue(conn, key=f"deliver:{sid}:{partner}:{self.chunk_no}", client_id=self.client_id,
                                     partner_id=partner, operation="deliver_batch",
                                     payload={"submission_id": sid, "claim_ids": claim_ids}, now=now)
            rows = [(p.mapped.row, p.mapped.reference, outcome_of(p.findings), f) for p in chunk for f in p.findings]
            rows = rows[:max(0, MAX_STORED_FINDINGS - self.stored_findings)]
            self.stored_findings += len(rows)
            sub_store.record_findings(conn, sid, rows)
            sub_store.set_progress(conn, sid, last_row)
        return ids

    def _report(self, p: _Pending, claim_id: int | None) -> None:
        outcome = outcome_of(p.findings)
        r = self.result
        r.rows += 1
        if outcome is Outcome.REJECTED:
            r.rejected += 1
        else:
            r.accepted += outcome is Outcome.ACCEPTED
            r.held += outcome is Outcome.HELD
            claim = p.mapped.claim
            if claim is not None:
                # The submission total is in its first claim's currency; others are counted, not summed.
                r.currency = r.currency or claim.currency
                if claim.currency == r.currency:
                    self.total += claim.total_open_amount
        if self.writer is not None:
            self.writer.row(p.mapped.row, p.mapped.reference, outcome, claim_id, p.findings)
        if len(r.results) < MAX_RESULTS:
            r.results.append(RowResult(p.mapped.row, p.mapped.reference, outcome.value, claim_id, p.findings))
        else:
            r.results_truncated = True
