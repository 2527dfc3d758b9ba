"""Submissions: one row per file or SOAP call, durable before anything is processed."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, RowMapping, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.crypto.fieldcrypt import FieldCipher
from gateway.domain.findings import Finding, Outcome
from gateway.domain.sandbox import SANDBOX_SUFFIX, is_sandbox_client
from gateway.errors import NotFound
from gateway.store.schema import submission_findings, submission_payloads, submissions
from gateway.store.sql import aggregate_time, bulk_insert, utcnow

# Statements built once and run with parameters: SQLAlchemy then reuses their compiled form and cache key
# instead of building both again for literal values on every call (a measurable share of a SOAP request).
_INSERT = insert(submissions).returning(*submissions.c)
_INSERT_PAYLOAD = insert(submission_payloads)
_UPDATE = update(submissions).where(submissions.c.id == bindparam("submission_id_"))


class SubmissionCounts(msgspec.Struct, kw_only=True):
    rows: int = 0
    accepted: int = 0
    held: int = 0
    rejected: int = 0
    total_minor: int = 0
    currency: str | None = None


def new_reference(now: datetime, sandbox: bool = False) -> str:
    """A reference a person can read out on the phone: date plus six random characters (``SBX`` for a sandbox)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return f"{'SBX' if sandbox else 'S'}{now:%Y%m%d}-{''.join(secrets.choice(alphabet) for _ in range(6))}"


def find_duplicate(conn: Connection, client_id: str, dedupe_key: str) -> RowMapping | None:
    """The earlier submission of the same content by the same client, if any."""
    return conn.execute(select(submissions).where(submissions.c.client_id == client_id,
                                                  submissions.c.dedupe_key == dedupe_key)).mappings().first()


def release_dedupe(conn: Connection, submission_id: int) -> None:
    """Let the same content be submitted again: a failed submission keeps its record and sha256, not its claim on
    the content."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id).values(dedupe_key=None))


def create(conn: Connection, *, client_id: str, channel: str, filename: str | None, sha256: str,
           size: int, dedupe: bool, received_at: datetime | None = None) -> RowMapping | None:
    """Insert a submission in state ``processing``; None if the same content was submitted before."""
    now = received_at or utcnow()
    values: dict[str, Any] = dict(
        reference=new_reference(now, is_sandbox_client(client_id)), client_id=client_id, channel=channel, filename=filename, sha256=sha256,
        dedupe_key=sha256 if dedupe else None, size=size, status="processing", received_at=now,
        rows=0, accepted=0, held=0, rejected=0, total_minor=0, progress_row=0)
    # the whole row comes back from the INSERT itself (no second SELECT); without a dedupe key nothing can
    # collide, so no savepoint either: two statements fewer on every synchronous (SOAP, web) submission
    if not dedupe:
        return conn.execute(_INSERT, values).mappings().one()
    try:
        with conn.begin_nested():
            return conn.execute(_INSERT, values).mappings().one()
    except IntegrityError:
        return None


def store_payload(conn: Connection, cipher: FieldCipher, submission_id: int, chunks: Iterable[bytes]) -> None:
    """Keep the raw inbound bytes, encrypted chunk by chunk and bound to submission and position."""
    for seq, chunk in enumerate(chunks):
        aad = f"payload:{submission_id}:{seq}".encode()
        conn.execute(_INSERT_PAYLOAD, dict(submission_id=submission_id, seq=seq, data=cipher.encrypt(chunk, aad)))


def read_payload(conn: Connection, cipher: FieldCipher, submission_id: int) -> Iterable[bytes]:
    """The raw inbound bytes, decrypted chunk by chunk."""
    rows = conn.execute(select(submission_payloads.c.seq, submission_payloads.c.data)
                        .where(submission_payloads.c.submission_id == submission_id)
                        .order_by(submission_payloads.c.seq))
    for seq, data in rows:
        yield cipher.decrypt(data, f"payload:{submission_id}:{seq}".encode())


def get(conn: Connection, ident: int | str) -> RowMapping:
    """A submission by id or reference."""
    col = submissions.c.id if isinstance(ident, int) else submissions.c.reference
    row = conn.execute(select(submissions).where(col == ident)).mappings().first()
    if row is None:
        raise NotFound(f"no submission {ident}")
    return row


def get_owned(conn: Connection, ident: int | str, client_id: str) -> RowMapping:
    """A submission of ``client_id``; another client's answers exactly like one that does not exist."""
    try:
        row = get(conn, ident)
    except NotFound:
        row = None
    if row is None or row["client_id"] != client_id:
        raise NotFound(f"no submission {ident}")
    return row


def record_findings(conn: Connection, submission_id: int,
                    rows: Sequence[tuple[int | None, str | None, Outcome, Finding]]) -> None:
    bulk_insert(conn, submission_findings,
                ("submission_id", "row", "reference", "outcome", "code", "severity", "field", "column", "message"),
                [(submission_id, row, ref, outcome.value, f.code, f.severity.value, f.field, f.column, f.message)
                 for row, ref, outcome, f in rows])


def findings(conn: Connection, submission_id: int, limit: int = 1000) -> list[RowMapping]:
    return list(conn.execute(select(submission_findings).where(submission_findings.c.submission_id == submission_id)
                             .order_by(submission_findings.c.row, submission_findings.c.id).limit(limit)).mappings())


def count_findings(conn: Connection, submission_id: int) -> int:
    """How many findings of the submission are stored (they are capped per submission)."""
    return int(conn.execute(select(func.count()).select_from(submission_findings)
                            .where(submission_findings.c.submission_id == submission_id)).scalar_one())


def set_progress(conn: Connection, submission_id: int, progress_row: int) -> None:
    conn.execute(update(submissions).where(submissions.c.id == submission_id).values(progress_row=progress_row))


def finish(conn: Connection, submission_id: int, *, status: str, counts: SubmissionCounts | None = None,
           error: str | None = None, ack_path: str | None = None) -> None:
    values: dict[str, Any] = dict(status=status, error=error, ack_path=ack_path, completed_at=utcnow())
    if counts is not None:
        values.update(msgspec.structs.asdict(counts))
    conn.execute(_UPDATE, {**values, "submission_id_": submission_id})


def count_resume(conn: Connection, submission_id: int) -> int:
    """Record one more resume of an unfinished submission (committed before it runs); the new count."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id)
                 .values(resume_attempts=submissions.c.resume_attempts + 1))
    return int(conn.execute(select(submissions.c.resume_attempts)
                            .where(submissions.c.id == submission_id)).scalar_one())


def uncount_resume(conn: Connection, submission_id: int) -> None:
    """Take back one counted resume: it was ended by a clean stop, not by the file."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id, submissions.c.resume_attempts > 0)
                 .values(resume_attempts=submissions.c.resume_attempts - 1))


def latest_activity(conn: Connection, channels: Sequence[str]) -> dict[str, datetime]:
    """Client id -> when its latest submission over ``channels`` was received or finished, whichever is later."""
    q = (select(submissions.c.client_id, func.max(submissions.c.received_at), func.max(submissions.c.completed_at))
         .where(submissions.c.channel.in_(list(channels))).group_by(submissions.c.client_id))
    out: dict[str, datetime] = {}
    for client_id, received, completed in conn.execute(q):
        times = [aggregate_time(t) for t in (received, completed) if t is not None]
        if times:
            out[str(client_id)] = max(times)
    return out


def unfinished(conn: Connection) -> list[RowMapping]:
    """Submissions a crash left in ``processing``: resumed at start-up."""
    return list(conn.execute(select(submissions).where(submissions.c.status == "processing")
                             .order_by(submissions.c.id)).mappings())


def listing(conn: Connection, *, client_id: str | None = None, status: str | None = None,
            since: datetime | None = None, until: datetime | None = None, limit: int = 100,
            offset: int = 0, sandbox: bool = False) -> list[RowMapping]:
    """Submissions of one client, or of every production client (every sandbox with ``sandbox``), newest first."""
    q = select(submissions).order_by(submissions.c.received_at.desc(), submissions.c.id.desc())
    q = _filtered(q, client_id, status, since, until, sandbox)
    return list(conn.execute(q.limit(limit).offset(offset)).mappings())


def count_listing(conn: Connection, *, client_id: str | None = None, status: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, sandbox: bool = False) -> int:
    """How many submissions ``listing`` would page through."""
    q = _filtered(select(func.count()).select_from(submissions), client_id, status, since, until, sandbox)
    return int(conn.execute(q).scalar_one())


def _filtered(q: Any, client_id: str | None, status: str | None, since: datetime | None,
              until: datetime | None, sandbox: bool = False) -> Any:
    if client_id:
        q = q.where(submissions.c.client_id == client_id)
    else:  # every client: production only, or only sandboxes when asked (docs/sandbox.md)
        mine = submissions.c.client_id.like(f"%{SANDBOX_SUFFIX}")
        q = q.where(mine if sandbox else ~mine)
    if status:
        q = q.where(submissions.c.status == status)
    if since:
        q = q.where(submissions.c.received_at >= since)
    if until:
        q = q.where(submissions.c.received_at < until)
    return q


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(submissions)).scalar_one())
