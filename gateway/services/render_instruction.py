"""Render one per-claim instruction for a file-based partner (schemas/partner-instruction-v1.xsd), and validate one.

The payloads are the outbox's (``claim_ops``): ``cancel {reason}``, ``report_payment {amount, currency,
date}``, ``send_message {message_id, text}``, ``request_monitoring {}``, ``refresh {}``. Escaping, money
and timestamps follow the partner batch (``render``), so a partner reads both with the same rules.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from gateway.services.render import _esc, _timestamp, money, validate_document

NAMESPACE = "urn:inkasso-gateway:partner-instruction:1"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "partner-instruction-v1.xsd"


class InstructionMeta(msgspec.Struct, frozen=True, kw_only=True):
    """The instruction's header: who sends what about which claim."""

    instruction_id: str
    operation: str
    created_at: dt.datetime
    sender: str
    client_id: str
    partner_id: str
    claim_id: int
    creditor_reference: str
    file_number: str | None = None


def _leaf(name: str, value: str) -> str:
    try:
        return f"<{name}>{_esc(value)}</{name}>"
    except ValueError as exc:  # the value stays out of the message: it may be free text about a debtor
        raise ValueError(f"<{name}>: {exc}") from None


def _body(operation: str, data: Mapping[str, Any]) -> str:
    if operation == "cancel":
        reason = str(data.get("reason") or "").strip()
        return f"<cancel>{_leaf('reason', reason) if reason else ''}</cancel>"
    if operation == "report_payment":
        currency = str(data["currency"])
        amount = money(Decimal(str(data["amount"])), currency)
        day = dt.date.fromisoformat(str(data["date"])).isoformat()
        return (f'<directPayment><amount currency="{_esc(currency)}">{amount}</amount>'
                f"<date>{day}</date></directPayment>")
    if operation == "send_message":
        return f"<message>{_leaf('messageId', str(data['message_id']))}{_leaf('text', str(data['text']))}</message>"
    if operation == "request_monitoring":
        return "<longTermMonitoring/>"
    if operation == "refresh":
        return "<refresh/>"
    raise ValueError(f"operation {operation!r} has no instruction document")


def render_instruction(meta: InstructionMeta, data: Mapping[str, Any]) -> bytes:
    """The instruction document as UTF-8 bytes; ValueError if the operation or a value cannot be written."""
    parts = ["<?xml version='1.0' encoding='utf-8'?>\n", f'<instruction xmlns="{NAMESPACE}" version="1">',
             _leaf("instructionId", meta.instruction_id), f"<createdAt>{_timestamp(meta.created_at)}</createdAt>",
             _leaf("sender", meta.sender), _leaf("clientId", meta.client_id), _leaf("partnerId", meta.partner_id),
             f"<claimId>{int(meta.claim_id)}</claimId>", _leaf("creditorReference", meta.creditor_reference)]
    if meta.file_number:
        parts.append(_leaf("fileNumber", meta.file_number))
    parts += [_body(meta.operation, data), "</instruction>\n"]
    return "".join(parts).encode("utf-8")


def validate_instruction(source: bytes | str | os.PathLike[str], *, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Validate an instruction document against its XSD; returns error strings, empty if valid."""
    return validate_document(source, schema_path, "a partner instruction")
