"""The one interface every partner adapter implements, and the values it passes in and out.

Adapters import only this module, their own sibling modules, ``gateway.domain`` and ``gateway.errors``;
never the store. Besides ``deliver`` an adapter may offer per-claim operations (``operate``) and status
back (``fetch_updates``/``commit_updates``); what it cannot do it refuses with ``NotSupported``.

Each adapter class declares what its partners can take (``capabilities``); a partner's config may narrow
that set (``partners.<id>.capabilities``), and the gateway refuses an operation outside it before
anything is queued. File-based adapters take instructions as documents (``InstructionAdapter``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import Decimal
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgspec

from gateway.errors import ConfigError, DeliveryError

log = logging.getLogger("gateway.adapters")

# Per-claim operations the outbox carries besides deliver_batch.
OPERATIONS = ("cancel", "report_payment", "send_message", "request_monitoring", "refresh", "set_labels")

# What a partner may accept. ``labels`` is the one extra: labels are the client's own flags, kept by the
# gateway whatever the partner does, and only passed on to partners that take them.
CAPABILITIES = ("deliver", "status_pull", "status_push", "cancel", "direct_payment", "message",
                "long_term_monitoring", "refresh", "documents", "labels")
# The capability each per-claim operation needs, and how a refusal names it to people.
OPERATION_CAPABILITY = {"cancel": "cancel", "report_payment": "direct_payment", "send_message": "message",
                        "request_monitoring": "long_term_monitoring", "refresh": "refresh", "set_labels": "labels"}
CAPABILITY_TEXT = {"deliver": "case files", "status_pull": "status queries", "status_push": "status pushes",
                   "cancel": "cancellations", "direct_payment": "direct payment reports", "message": "messages",
                   "long_term_monitoring": "long-term monitoring requests", "refresh": "refresh requests",
                   "documents": "documents", "labels": "labels"}
# Status codes of a partner's receipt for an instruction document (``PartnerUpdate.kind == "instruction"``).
INSTRUCTION_RECEIVED, INSTRUCTION_REJECTED = "INSTRUCTION_RECEIVED", "INSTRUCTION_REJECTED"


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered, signed and encrypted case file ready for a partner."""

    batch_id: str  # the idempotency key: delivering the same batch twice must not duplicate it
    partner_id: str
    filename: str
    payload: bytes
    claim_ids: list[int]
    content_type: str = "application/pkcs7-mime"

    def claim_key(self, claim_id: int) -> str:
        """The per-claim idempotency key (claim + partner + operation) sent with every create."""
        return f"{claim_id}:{self.partner_id}:deliver"


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """The partner's confirmation that a batch arrived."""

    batch_id: str
    partner_reference: str
    delivered_at: dt.datetime  # timezone-aware UTC
    detail: str = ""
    references: dict[int, str] = msgspec.field(default_factory=dict)  # claim id -> partner file number


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One per-claim request to a partner (cancel, report_payment, ...), with its idempotency key."""

    operation: str
    key: str  # claim + partner + operation (+ the outbox row), sent so a retry is folded by the partner
    claim_id: int
    partner_reference: str | None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class PartnerUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Something the partner reports about a claim: a status code, a payment or a message."""

    update_id: str  # the partner's id for this update: applying it twice changes nothing
    claim_id: int
    kind: str  # status, payment, message
    code: str = ""  # the partner's own status code, verbatim
    partner_reference: str = ""
    amount: str | None = None  # decimal string
    currency: str | None = None
    date: str | None = None  # ISO date
    message_id: str | None = None
    text: str | None = None
    occurred_at: str | None = None  # ISO timestamp as the partner gave it
    instruction_id: str | None = None  # kind "instruction": the instruction document this receipt is for


class OperationResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a partner answered to an operation; ``updates`` carry a refresh's status back."""

    detail: str = ""
    updates: list[PartnerUpdate] = msgspec.field(default_factory=list)


class UpdatePage(msgspec.Struct, frozen=True, kw_only=True):
    """Updates since a cursor; ``cursor`` is where the next fetch starts (opaque to the gateway)."""

    updates: list[PartnerUpdate]
    cursor: str | None


class NotSupported(DeliveryError):
    """The partner does not offer this operation: never retried, recorded as not supported."""

    def __init__(self, partner_id: str, operation: str) -> None:
        super().__init__(f"partner {partner_id!r} does not support {operation!r}", retryable=False)
        self.operation = operation


@runtime_checkable
class PartnerAdapter(Protocol):
    """A transport to one collection partner, registered by alias in ``adapters.ADAPTERS``."""

    name: str
    capabilities: ClassVar[frozenset[str]]  # what its partners can take (names from CAPABILITIES)
    # The adapter's own exceptions worth retrying; the dispatcher builds its retry policy from these
    # plus DeliveryError.retryable, so no adapter re-invents backoff.
    retryable: tuple[type[BaseException], ...]

    def deliver(self, batch: Batch) -> Receipt:
        """Hand the batch over exactly once; raises DeliveryError on failure."""
        ...

    def close(self) -> None:
        """Release connections and other resources."""
        ...


@runtime_checkable
class UpdatingAdapter(Protocol):
    """An adapter that also takes per-claim operations and reports status back."""

    def operate(self, op: Operation) -> OperationResult:
        """Run one per-claim operation; NotSupported if the partner has no such thing."""
        ...

    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """Updates after ``cursor`` (None: from the beginning)."""
        ...

    def commit_updates(self, page: UpdatePage) -> None:
        """Tell the partner the page is stored (partners with a transaction to commit); else nothing."""
        ...


@runtime_checkable
class InstructionAdapter(Protocol):
    """A file-based adapter: per-claim instructions travel as signed, encrypted documents."""

    def deliver_instruction(self, document: Batch) -> Receipt:
        """Hand one instruction document over exactly once (by its id, like a batch); DeliveryError on failure."""
        ...


class OperationsMixin:
    """Routes ``operate`` to ``op_<operation>`` methods; a missing one means NotSupported."""

    partner_id: str

    def operate(self, op: Operation) -> OperationResult:
        """Run one per-claim operation through the matching ``op_*`` method."""
        method: Callable[[Operation], OperationResult] | None = getattr(self, f"op_{op.operation}", None)
        if op.operation not in OPERATIONS or method is None:
            raise NotSupported(self.partner_id, op.operation)
        return method(op)

    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """No status back unless the adapter overrides this."""
        raise NotSupported(self.partner_id, "fetch_updates")

    def commit_updates(self, page: UpdatePage) -> None:
        """Nothing to commit by default: the gateway keeps the cursor."""


def bool_option(options: Mapping[str, Any], name: str, key: str, default: bool = False) -> bool:
    """A true/false option; anything else (a quoted YAML "false", which ``bool()`` reads as true) is a ConfigError
    naming ``key.name``, not a switch turned the other way without a word."""
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"option '{name}' must be true or false", key=f"{key}.{name}")
    return value


def confirmed_references(where: str, batch: Batch, named: Mapping[int, str]) -> dict[int, str]:
    """The file numbers an API partner's create answer gives the batch's claims, checked against what was sent.

    A claim the answer does not name (or names without a file number) is not confirmed: taken as handed over,
    it would be reported at the agency when nothing says it is. The attempt fails retryably instead, and the
    partner folds the repeated create by the claims' keys. A claim the answer names but the batch did not carry
    is left out: it gets no receipt, and the partner is not asked to release it.
    """
    sent = set(batch.claim_ids)
    refs = {cid: ref for cid, ref in named.items() if cid in sent and ref}
    extra = sorted(set(named) - sent)
    if extra:
        log.warning("adapter.answer_names_unsent partner=%s batch=%s claims=%d first=%d", batch.partner_id,
                    batch.batch_id, len(extra), extra[0])
    missing = sorted(sent - set(refs))
    if missing:
        raise DeliveryError(f"{where}: the answer confirms {len(refs)} of the batch's {len(sent)} claims (first not "
                            f"confirmed: claim {missing[0]}); sent again", retryable=True)
    return refs


_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def safe_code(value: object) -> str | None:
    """A partner's error code if it is a plain token; its free text may repeat a debtor's data and is never kept."""
    text = str(value) if isinstance(value, (str, int)) else ""
    return text if _TOKEN.match(text) else None


# Floats never: a JSON number (an amount, say) is read as a Decimal, exactly as written.
_json_exact = msgspec.json.Decoder(float_hook=Decimal)


def updates_from(doc: Any) -> list[PartnerUpdate]:
    """Updates from decoded JSON (numbers as Decimal or int). Many APIs send an amount as a JSON number, not the
    decimal string the update holds: it is taken as written (``0.20`` -> ``"0.20"``), not failed. Raises
    msgspec.ValidationError naming the index and field, never the value."""
    if isinstance(doc, list):
        doc = [{**u, "amount": str(u["amount"])} if isinstance(u, dict) and isinstance(u.get("amount"), (int, Decimal))
               and not isinstance(u.get("amount"), bool) else u for u in doc]
    return msgspec.convert(doc, list[PartnerUpdate])


def decode_updates(data: bytes) -> list[PartnerUpdate]:
    """Updates from a JSON array (status files, webhook bodies, JSON APIs)."""
    return updates_from(_json_exact.decode(data))


def encode_updates(updates: list[PartnerUpdate]) -> bytes:
    """A JSON array of updates (what ``decode_updates`` reads)."""
    return msgspec.json.encode(updates)
