"""Tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and change them.

``claims`` and ``claim_events`` are append-only: no code path updates or deletes them, and the
database refuses it too (triggers, see migration 0001). A claim's state is its latest event's.
Debtor personal data lives only in ``claims.personal`` (AES-GCM, bound to client and reference).
Amounts are integers in minor units; dates are dates; times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    DateTime,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

submissions = Table(
    "submissions", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("reference", String(32), nullable=False, unique=True),
    Column("client_id", String(64), nullable=False),
    Column("channel", String(16), nullable=False),  # file, sftp, watch, soap, web, cli
    Column("filename", String(512), nullable=True),
    Column("sha256", String(64), nullable=False),
    # Same file twice is refused per client: the sha256 for files, NULL (no dedupe) for SOAP calls.
    Column("dedupe_key", String(64), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),  # processing, completed, completed_with_errors, failed
    Column("rows", Integer, nullable=False, default=0),
    Column("accepted", Integer, nullable=False, default=0),
    Column("held", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("total_minor", BigInteger, nullable=False, default=0),
    Column("currency", String(3), nullable=True),
    Column("progress_row", Integer, nullable=False, default=0),  # last source row whose claims are committed
    # start-ups that resumed it while still processing: a file that kills the process is not retried forever
    Column("resume_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("error", Text, nullable=True),
    Column("ack_path", Text, nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    UniqueConstraint("client_id", "dedupe_key", name="uq_submissions_client_dedupe"),
    Index("ix_submissions_client_received", "client_id", "received_at"),
)

# The raw inbound payload, encrypted in chunks so a large file never sits in memory whole.
submission_payloads = Table(
    "submission_payloads", metadata,
    Column("submission_id", BigInteger, ForeignKey("submissions.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

submission_findings = Table(
    "submission_findings", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("submission_id", BigInteger, ForeignKey("submissions.id"), nullable=False),
    Column("row", Integer, nullable=True),
    Column("reference", String(128), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("code", String(48), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("field", String(128), nullable=True),
    Column("column", String(256), nullable=True),
    Column("message", Text, nullable=False),
    Index("ix_findings_submission_row", "submission_id", "row"),
)

claims = Table(
    "claims", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=False),  # allocated by the store in blocks
    Column("client_id", String(64), nullable=False),
    Column("creditor_reference", String(128), nullable=False),
    Column("submission_id", BigInteger, ForeignKey("submissions.id"), nullable=False),
    Column("source_row", Integer, nullable=True),
    Column("partner_id", String(64), nullable=True),
    Column("claim_type", String(24), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("principal_minor", BigInteger, nullable=False),
    Column("open_minor", BigInteger, nullable=False),
    Column("invoice_number", String(128), nullable=True),
    Column("invoice_date", Date, nullable=True),
    Column("due_date", Date, nullable=True),
    Column("debtor_index", String(32), nullable=True),  # unused since 0009: claim_keys.name_index
    Column("personal", LargeBinary, nullable=False),  # encrypted JSON: debtor and memo
    Column("body", Text, nullable=False),  # canonical claim JSON without personal data
    Column("created_at", UTCDateTime(), nullable=False),
    # a sandbox client's claim: only a sandbox partner may receive it (dispatcher), production lists leave it out
    Column("sandbox", Boolean(), nullable=False, server_default=false()),
    UniqueConstraint("client_id", "creditor_reference", name="uq_claims_client_reference"),
    Index("ix_claims_submission", "submission_id"),
    Index("ix_claims_client_created", "client_id", "created_at"),
    Index("ix_claims_sandbox_created", "sandbox", "created_at", "id"),  # the every-client list, newest first
)

claim_events = Table(
    "claim_events", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("claim_id", BigInteger, ForeignKey("claims.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("state", String(32), nullable=False),  # the claim's state after this event
    Column("from_state", String(32), nullable=True),
    Column("actor", String(16), nullable=False),
    Column("kind", String(32), nullable=False),  # intake, transition, receipt, delivery_failed, ...
    Column("data", Text, nullable=True),  # JSON: codes, partner reference, stage, error
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_events_claim", "claim_id", "id"),
    Index("ix_events_client", "client_id", "id"),
)

# Each claim's current state and case account, folded from its events (store/projection.py) and written
# in the same transaction as every event. Not append-only: it is a cache of the log, rebuilt by
# `gateway db rebuild-projection`. Only ``seen_event_id`` (the client's "read" mark) is its own data.
claim_current = Table(
    "claim_current", metadata,
    # No foreign key to claims (migration 0014): claims are never deleted, and the check cost a row lock per
    # row on PostgreSQL; a row naming no claim is removed by the rebuild.
    Column("claim_id", BigInteger, primary_key=True, autoincrement=False),
    Column("client_id", String(64), nullable=False),
    Column("creditor_reference", String(128), nullable=False),
    Column("submission_id", BigInteger, nullable=False),
    Column("partner_id", String(64), nullable=True),
    Column("state", String(32), nullable=False),
    Column("stage", String(32), nullable=True),
    Column("partner_file_number", String(128), nullable=True),
    Column("closing_reason", String(64), nullable=True),  # the partner's code (or the event kind) that ended it
    Column("currency", String(3), nullable=False),
    Column("principal_minor", BigInteger, nullable=False),
    Column("fees_minor", BigInteger, nullable=False),
    Column("interest_minor", BigInteger, nullable=False),
    Column("agency_costs_minor", BigInteger, nullable=False),
    Column("paid_direct_minor", BigInteger, nullable=False),
    Column("paid_agency_minor", BigInteger, nullable=False),
    Column("payouts_minor", BigInteger, nullable=False),
    Column("written_off_minor", BigInteger, nullable=False),
    Column("open_minor", BigInteger, nullable=False),
    Column("overpaid_minor", BigInteger, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),  # the latest event's time
    Column("last_event_id", BigInteger, nullable=False),
    Column("changed_event_id", BigInteger, nullable=False),  # latest event the client did not cause itself
    Column("seen_event_id", BigInteger, nullable=False),  # up to where the client has looked
    Index("ix_current_client_state_updated", "client_id", "state", "updated_at", "claim_id"),
    Index("ix_current_client_updated", "client_id", "updated_at", "claim_id"),
    # partner first, so that lists without a partner condition do not pick it (migration 0010)
    Index("ix_current_partner_client_updated", "partner_id", "client_id", "updated_at", "claim_id"),
    Index("ix_current_submission_state", "submission_id", "state"),
    Index("ix_current_submission_claim", "submission_id", "claim_id"),  # a run's claims in order (stable columns)
)

outbox = Table(
    "outbox", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(160), nullable=False, unique=True),
    Column("client_id", String(64), nullable=False),
    Column("partner_id", String(64), nullable=False),
    Column("operation", String(32), nullable=False),  # deliver_batch
    Column("payload", Text, nullable=False),  # JSON, e.g. {"submission_id": 1, "claim_ids": [...]}
    Column("status", String(16), nullable=False),  # pending, leased, done, dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("receipt", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime(), nullable=True),
    # when the current run of failed attempts began: the dispatcher's retry window runs from it
    Column("failing_since", UTCDateTime(), nullable=True),
    Index("ix_outbox_status_available", "status", "available_at"),
)

# Messages between client and partner about a claim; the text is personal data and kept encrypted.
messages = Table(
    "messages", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("claim_id", BigInteger, ForeignKey("claims.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("direction", String(16), nullable=False),  # to_partner, from_partner
    Column("text", LargeBinary, nullable=False),  # encrypted, bound to the message's claim
    Column("partner_message_id", String(128), nullable=True),  # the partner's id: inbound dedupe
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("claim_id", "direction", "partner_message_id", name="uq_messages_partner_id"),
    Index("ix_messages_claim", "claim_id", "id"),
)

# Documents sent with a claim (issue 5); the content is encrypted, bound to claim and digest.
documents = Table(
    "documents", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("claim_id", BigInteger, ForeignKey("claims.id"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("kind", String(32), nullable=False),  # invoice, dunning_letter, image, contract, other
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_documents_claim", "claim_id", "id"),
)

# A claim's current labels for filtering (issue 5); each change is also recorded as a claim event.
claim_labels = Table(
    "claim_labels", metadata,
    Column("claim_id", BigInteger, ForeignKey("claims.id"), primary_key=True),
    Column("label", String(64), primary_key=True),
    Index("ix_claim_labels_label", "label", "claim_id"),
)

# Each client's label catalogue (migration 0010): the name it gave a label and its colour (a palette name,
# services/labels.py). Claims carry labels by name in claim_labels.
client_labels = Table(
    "client_labels", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("colour", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# The web console's sessions (migration 0010), so that a logout ends a session on every node, whoever holds a
# copy of its cookie: the signed cookie carries a random token, this table its SHA-256 (a stolen table holds no
# cookie). A row ends at ``expires_at`` (moved on while the session is used) or when deleted (logout, a reset
# password, a removed login). ``credential`` binds it to the login as it was at login (a keyed fingerprint of
# its password hash, client and role): a changed or re-added login never takes over an old session. ``search``
# holds the session's search texts (they may be a debtor's name: never in the cookie, which is only signed).
web_sessions = Table(
    "web_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("login", String(128), nullable=False),
    Column("credential", String(64), nullable=False, server_default=""),
    Column("search", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_web_sessions_login", "login"),
    Index("ix_web_sessions_expires", "expires_at"),
)

# A keyed fingerprint of each claim's canonical content (migration 0007): tells an identical resend of a
# known reference from a conflicting one. Claims stored before 0007 have no row. See store/fingerprints.py.
claim_fingerprints = Table(
    "claim_fingerprints", metadata,
    Column("claim_id", BigInteger, primary_key=True),  # no foreign key: see claim_current
    Column("fingerprint", String(80), nullable=False),  # "<version>:<hex HMAC-SHA256>"
)

# -- SFTP inbox (issue 4) ---------------------------------------------------------------------------
# Files the gateway's SFTP server is tracking in inbox/<client>/upload: writing, incomplete, complete,
# processing. A row exists before the file does, so a crash mid-upload is never mistaken for a file.
sftp_uploads = Table(
    "sftp_uploads", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(512), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("node_id", String(200), nullable=True),  # the node whose SFTP front receives it
)

# Named leases: one owner at a time (a node id), until ``expires_at`` unless renewed. See store/leases.py.
leases = Table(
    "leases", metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
)

# Per client: the last claim_events.id a status file covered, and when the last run was.
status_cursors = Table(
    "status_cursors", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("last_event_id", BigInteger, nullable=False),
    Column("last_run_at", UTCDateTime(), nullable=True),
)

# Every status file planned, committed before it is written: a lost file is rewritten from its range.
status_files = Table(
    "status_files", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("filename", String(256), nullable=False),
    Column("first_event_id", BigInteger, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("format", String(8), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("client_id", "filename", name="uq_status_files_client_name"),
)

# -- delivery layer (issue 6, migration 0003) ------------------------------------------------------
# Where each partner's scheduled pull of updates stands (its cursor is the partner's own, opaque).
partner_sync = Table(
    "partner_sync", metadata,
    Column("partner_id", String(64), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("last_sync_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updates", BigInteger, nullable=False, server_default="0"),
)

# Every partner update applied once: pushed and pulled copies of the same update fold here.
partner_updates = Table(
    "partner_updates", metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("partner_id", String(64), nullable=False),
    Column("update_id", String(160), nullable=False),
    Column("claim_id", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),  # status, payment, message
    Column("code", String(64), nullable=True),
    Column("outcome", String(32), nullable=False),  # applied, unknown_code, unknown_claim, illegal, recorded
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("partner_id", "update_id", name="uq_partner_updates_partner_update"),
    Index("ix_partner_updates_claim", "claim_id"),
)

# Facts about the database itself (migration 0017): ``database_id``, made once, which every node keeps in
# <var>/database-id and checks at start (services/database_identity.py).
gateway_meta = Table(
    "gateway_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
