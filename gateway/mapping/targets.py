"""The canonical fields a mapping may fill, with their value type.

A target name is what an integrator writes under ``fields:`` in a mapping file. Most are the
claim's own attribute names; grouped ones use a dotted prefix (``debtor.city``, ``fees.dunning``,
``interest.from_date``, ``payments.amount``). The engine decides from the kind how a cell is parsed.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable
from typing import NamedTuple

from gateway.domain.iban import normalize_iban
from gateway.domain.model import ClaimType, DebtorKind, InterestKind, Salutation
from gateway.mapping import transforms as t


class Kind(str, enum.Enum):
    TEXT = "text"          # kept as written (trimmed)
    CODE = "code"          # upper case: ISO country and currency codes, BIC
    IBAN = "iban"          # spaces removed, upper case
    AMOUNT = "amount"      # Decimal in the file's notation
    DATE = "date"          # date in the file's formats
    BOOL = "bool"          # ja/nein, yes/no, 1/0, x
    ENUM = "enum"          # one of a canonical enum's values
    LABELS = "labels"      # list split on ',' or ';'
    TEXT_LIST = "text_list"  # one-element list (phones, e-mails)


class Target(NamedTuple):
    name: str
    kind: Kind
    enum: type[enum.Enum] | None = None
    always_required: bool = False


def _t(name: str, kind: Kind = Kind.TEXT, enum_: type[enum.Enum] | None = None, req: bool = False) -> Target:
    return Target(name, kind, enum_, req)


_ALL = [
    _t("creditor_reference", req=True), _t("invoice_number"), _t("claim_type", Kind.ENUM, ClaimType),
    _t("reason"), _t("principal_amount", Kind.AMOUNT, req=True), _t("currency", Kind.CODE),
    _t("contract_date", Kind.DATE), _t("invoice_date", Kind.DATE), _t("due_date", Kind.DATE),
    _t("first_dunning_date", Kind.DATE), _t("last_dunning_date", Kind.DATE), _t("default_date", Kind.DATE),
    _t("acknowledgement_date", Kind.DATE), _t("last_payment_date", Kind.DATE), _t("dunning_order_date", Kind.DATE),
    _t("dunning_order_end_date", Kind.DATE), _t("negotiation_start_date", Kind.DATE),
    _t("negotiation_end_date", Kind.DATE),
    _t("disputed", Kind.BOOL), _t("memo"), _t("labels", Kind.LABELS), _t("partner_id"),
    _t("fees.dunning", Kind.AMOUNT), _t("fees.dunning_date", Kind.DATE),
    _t("fees.return_debit", Kind.AMOUNT), _t("fees.return_debit_date", Kind.DATE),
    _t("fees.other", Kind.AMOUNT), _t("fees.other_date", Kind.DATE),
    _t("interest.kind", Kind.ENUM, InterestKind), _t("interest.from_date", Kind.DATE),
    _t("interest.rate", Kind.AMOUNT),
    _t("payments.amount", Kind.AMOUNT), _t("payments.date", Kind.DATE), _t("payments.reference"),
    _t("debtor.kind", Kind.ENUM, DebtorKind), _t("debtor.salutation", Kind.ENUM, Salutation),
    _t("debtor.title"), _t("debtor.first_name"), _t("debtor.last_name"), _t("debtor.company"),
    _t("debtor.legal_form"), _t("debtor.representative"), _t("debtor.contact_person"),
    _t("debtor.birth_date", Kind.DATE), _t("debtor.customer_number"),
    _t("debtor.street"), _t("debtor.house_number"), _t("debtor.postal_code"), _t("debtor.city"),
    _t("debtor.country", Kind.CODE), _t("debtor.address_extra"),
    _t("debtor.phone", Kind.TEXT_LIST), _t("debtor.email", Kind.TEXT_LIST),
    _t("debtor.iban", Kind.IBAN), _t("debtor.bic", Kind.CODE), _t("debtor.account_holder"),
]
TARGETS: dict[str, Target] = {target.name: target for target in _ALL}

ADDRESS_FIELDS = ("street", "house_number", "postal_code", "city", "country", "address_extra")
FEE_KINDS = ("dunning", "return_debit", "other")


def closest_targets(name: str, n: int = 5) -> list[str]:
    """The valid target names most like ``name`` (for "did you mean" messages)."""
    return difflib.get_close_matches(name, TARGETS, n=n, cutoff=0.5)


# The parsers of the plain kinds; the engine's generated row function writes these three inline.
def text_value(s: str) -> str:
    return s


def code_value(s: str) -> str:
    return s.upper()


def text_list_value(s: str) -> list[str]:
    return [s]


def value_parser(target: Target, *, decimal: str, thousands: str,
                 date_formats: tuple[str, ...]) -> Callable[[str], object]:
    """Parser for a non-empty, trimmed cell in the file's notation."""
    if target.kind is Kind.AMOUNT:
        return t.decimal_parser(decimal, thousands)
    if target.kind is Kind.DATE:
        return t.date_parser(date_formats)
    return _plain_parser(target)


def canonical_parser(target: Target) -> Callable[[str], object]:
    """Parser for a value written in a mapping file: amounts 12.50, dates 2025-01-31."""
    if target.kind is Kind.AMOUNT:
        return t.parse_canonical_decimal
    if target.kind is Kind.DATE:
        return t.parse_canonical_date
    return _plain_parser(target)


def _plain_parser(target: Target) -> Callable[[str], object]:
    if target.kind is Kind.ENUM:
        assert target.enum is not None
        return t.enum_parser(target.enum)
    parsers: dict[Kind, Callable[[str], object]] = {
        Kind.TEXT: text_value, Kind.CODE: code_value, Kind.IBAN: normalize_iban, Kind.BOOL: t.parse_bool,
        Kind.LABELS: t.parse_labels, Kind.TEXT_LIST: text_list_value,
    }
    return parsers[target.kind]
