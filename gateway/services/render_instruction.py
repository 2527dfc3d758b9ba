"""Render one per-claim instruction for a file-based partner (schemas/partner-instruction-v1.xsd), and validate one.

The payloads are the outbox's (``claim_ops``): ``cancel {reason}``, ``report_payment {amount, currency,
date}``, ``send_message {message_id, text}``, ``request_monitoring {}``, ``refresh {}``. Escaping, money
and timestamps follow the partner batch (``render``), so a partner reads both with the same rules.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import msgspec
from lxml import etree

from gateway.services.render import _esc, _hardened_parser, _LogEntry, _schema, _timestamp, money

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
    schema = _schema(schema_path)
    try:
        if isinstance(source, bytes):
            tree = etree.ElementTree(etree.fromstring(source, _hardened_parser()))
        else:
            tree = etree.parse(os.fspath(source), _hardened_parser())
    except etree.XMLSyntaxError as exc:
        return [f"line {exc.lineno}: not well-formed: {exc.msg}"]
    if tree.docinfo.internalDTD is not None:
        return ["line 1: a DOCTYPE is not allowed in a partner instruction"]
    if schema.validate(tree):
        return []
    return [f"line {e.line}: {e.message}" for e in cast(Iterable[_LogEntry], schema.error_log)]
