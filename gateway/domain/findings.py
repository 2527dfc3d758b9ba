"""Validation results as data: a finding says what, where and how bad, so a person can act on it.

A ``Finding`` names a stable ``code``, the canonical ``field`` and, once the mapping layer has
filled it in, where it came from in the client's own terms (row, column, sheet, xpath).
Severity decides the outcome of a row: any ``error`` rejects it, else any ``hold`` holds it,
``warning`` only flags it.

``message`` never holds the rejected value: it is stored (``submission_findings``), shown to operators
and may reach logs, and a debtor's birth date or e-mail must not. ``client_message`` is the same text
with the client's own value quoted, for the client's ack only; it is never stored or logged.
"""

from __future__ import annotations

import enum

import msgspec


class Severity(str, enum.Enum):
    ERROR = "error"
    HOLD = "hold"
    WARNING = "warning"


class Outcome(str, enum.Enum):
    ACCEPTED = "accepted"
    HELD = "held"
    REJECTED = "rejected"
    CONFLICT = "conflict"  # rejected: a known reference sent again with different data (see row_outcome)


class Finding(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    severity: Severity = Severity.ERROR
    row: int | None = None
    column: str | None = None
    sheet: str | None = None
    xpath: str | None = None
    client_message: str | None = None  # with the value, for the client's own ack; never stored or logged

    def for_client(self) -> str:
        """The text for the client's ack: with its own value where there is one."""
        return self.client_message or self.message

    def located(self, *, row: int | None, column: str | None) -> "Finding":
        """The same finding with its source position filled in."""
        return msgspec.structs.replace(self, row=row, column=column)


def outcome_of(findings: list[Finding]) -> Outcome:
    """Rejected if any error, held if any hold, else accepted."""
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return Outcome.REJECTED
    if Severity.HOLD in severities:
        return Outcome.HELD
    return Outcome.ACCEPTED


def row_outcome(findings: list[Finding]) -> Outcome:
    """``outcome_of``, with a conflicting resend told apart from other rejections."""
    if any(f.code == CONFLICTING_RESEND for f in findings):
        return Outcome.CONFLICT
    return outcome_of(findings)


# Stable codes. Clients and partners key on these; never rename one, only add.
MISSING_FIELD = "missing_field"
TYPE_ERROR = "type_error"
COLUMN_COUNT = "column_count"  # a data row has more or fewer fields than the header
INVALID_DATE = "invalid_date"
INVALID_AMOUNT = "invalid_amount"
INVALID_IBAN = "invalid_iban"
INVALID_COUNTRY = "invalid_country"
INVALID_CURRENCY = "invalid_currency"
INVALID_VALUE = "invalid_value"
AMOUNT_NOT_POSITIVE = "amount_not_positive"
DATE_IN_FUTURE = "date_in_future"
DATE_ORDER = "date_order"
NO_CONTACT = "no_contact"
CONSUMER_INCOMPLETE = "consumer_incomplete"
DEBTOR_MINOR = "debtor_minor"
TOO_LONG = "too_long"  # a text longer than the canonical model allows (the SOAP limits)
TOO_MANY = "too_many"  # a repeated field with more entries than allowed
UNEXPECTED_ELEMENT = "unexpected_element"  # an XML element the schema does not expect there (SOAP)
DUPLICATE_REFERENCE = "duplicate_reference"
CONFLICTING_RESEND = "conflicting_resend"  # a known reference with different data; names fields, never values
NOTHING_OPEN = "nothing_open"
NO_PARTNER = "no_partner"
