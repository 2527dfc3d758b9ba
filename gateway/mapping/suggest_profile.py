"""Value profiles for ``mapping suggest``: what a column's sampled values are, whatever its header says.

Each column gets one kind from its values (most specific first): ``iban``, ``email``, ``date``,
``partytype`` (every value names a person or a company: Privat/Firma, P/F, private/business),
``currency`` (ISO 4217 codes), ``country`` (codes or names the built-in map knows), ``phone``,
``amount`` (with decimals), ``fullname`` ("Nachname, Vorname"), ``plz_city`` ("12345 Berlin"),
``street_no`` ("Musterstr. 12a"), ``address`` ("Musterstr. 12a, 12345 Musterstadt"), ``integer``, ``text``,
or ``empty``. A field is only given a column
whose kind fits it (``fits``): a currency column must hold currency codes, a fee an amount and never
a cost centre or a number, a customer number must not be a person/company flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.domain.countries import CURRENCIES
from gateway.domain.iban import iban_problem
from gateway.mapping.valuemaps import BUILTIN_MAPS

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
AMOUNT = re.compile(r"^[-+]?(?:€|EUR)?\s*\d{1,3}(?:[.,' ]?\d{3})*(?:[.,]\d{1,2})?\s*(?:€|EUR)?-?$", re.IGNORECASE)
_DECIMALS = re.compile(r"[.,]\d{1,2}\s*(?:€|EUR)?-?$")
POSTCODE = re.compile(r"^(?:\d{4,5}|\d{4}\s?[A-Z]{2})$")
STREET_NO = re.compile(r"\D\s*\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?$")
_ADDRESS = re.compile(r"^[^\d,@]{3,}\s\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?\s*,\s*"
                      r"(?:[A-Z]{1,2}-)?\d{4,5}\s+\S")
_STREET_VALUE = re.compile(r"^[^\d,@]{3,}\s\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?$")
PLZ_CITY = re.compile(r"^(?:[A-Z]{1,2}-)?\d{4,5}\s+\S")
_FULLNAME = re.compile(r"^[^\d,@;]+,\s*[^\d,@;]+$")
_PHONE = re.compile(r"^(?:\+|0)[\d\s/()-]{5,}$")
IBAN_SHAPE = re.compile(r"^[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,30}$")
HOUSE_NO = re.compile(r"^\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?$")
# Legal forms that make a name a company's (searched in the name).
LEGAL_FORM = (r"(?i)(?:\bGmbH\b|\bmbH\b|\bAG\b|\be\.\s?K\.|\bKG\b|\bUG\b|\bOHG\b|\bGbR\b|\bSE\b|\be\.\s?V\."
              r"|\bLtd\b|\bInc\b|\bB\.V\.|\bPartG\b|\bKGaA\b)")
_LEGAL = re.compile(LEGAL_FORM)
CONSUMER_WORDS = frozenset({"p", "person", "privat", "private", "privatperson", "privatkunde", "consumer",
                            "b2c", "verbraucher", "natuerlich", "natürlich", "pk", "individual"})
BUSINESS_WORDS = frozenset({"f", "firma", "firmenkunde", "business", "company", "gewerbe", "gewerblich", "b2b",
                            "unternehmen", "juristisch", "gk", "organisation", "organization", "corporate"})
# Header words of numbers that are no money, whatever their values look like.
_NOT_MONEY = re.compile(r"kostenstelle|^kst|kst$|costcent|kontonr|kontonummer|^konto$|nummer|stufe|whg|wohnung|^nr"
                        r"|nr$|no$|(?<!pa)id$|plz|zip|anzahl|menge|quantity|^qty")


def share(values: list[str], pred: Callable[[str], Any]) -> float:
    """The share of ``values`` for which ``pred`` holds (0 for no values)."""
    return sum(1 for v in values if pred(v)) / len(values) if values else 0.0


def classify(values: list[str], key: str, date_formats: Callable[[list[str]], list[str]]) -> tuple[str, list[str]]:
    """(kind, date formats) of a column from its non-empty sampled values and normalised header."""
    if not values:
        return "empty", []
    if share(values, lambda v: len(v) >= 15 and iban_problem(v.replace(" ", "")) is None) >= 0.8:
        return "iban", []
    if share(values, EMAIL.match) >= 0.8:
        return "email", []
    if fmts := date_formats(values):
        return "date", fmts
    folded = {v.casefold() for v in values}
    if folded <= CONSUMER_WORDS | BUSINESS_WORDS and folded & BUSINESS_WORDS and len(folded) <= 4 and (
            folded & CONSUMER_WORDS or len(folded) == 1):
        return "partytype", []
    if all(v in CURRENCIES for v in values):
        return "currency", []
    countries = BUILTIN_MAPS["country"]
    if all(v.casefold() in countries and not v.isdigit() for v in values) and (
            any(len(v) > 1 for v in values) or "land" in key or "country" in key):
        return "country", []
    if share(values, _PHONE.match) >= 0.8 and share(values, lambda v: sum(c.isdigit() for c in v) >= 6) >= 0.8 \
            and share(values, lambda v: not v.isdigit()) >= 0.5:
        return "phone", []
    if share(values, AMOUNT.match) >= 0.8 and share(values, lambda v: bool(_DECIMALS.search(v))) > 0:
        return "amount", []
    if share(values, _FULLNAME.match) >= 0.7:
        return "fullname", []
    if share(values, lambda v: bool(_ADDRESS.match(v))) >= 0.7:
        return "address", []  # "Musterstr. 12, 12345 Musterstadt": the whole address in one column
    if share(values, lambda v: bool(PLZ_CITY.match(v))) >= 0.6:
        return "plz_city", []
    if share(values, lambda v: bool(_STREET_VALUE.match(v))) >= 0.7:
        return "street_no", []
    if share(values, str.isdigit) >= 0.9:
        return "integer", []
    return "text", []


def legal_share(values: list[str]) -> float:
    """The share of values carrying a legal form (GmbH, AG, e.K., ...)."""
    return share(values, lambda v: bool(_LEGAL.search(v)))


def is_party_type(value: str) -> str | None:
    """'consumer' or 'business' for a person/company flag value, else None."""
    v = value.casefold()
    return "consumer" if v in CONSUMER_WORDS else "business" if v in BUSINESS_WORDS else None


_AMOUNTS = ("principal_amount", "fees.dunning", "fees.return_debit", "fees.other", "payments.amount",
            "interest.rate")
_IDS = ("creditor_reference", "invoice_number", "debtor.customer_number", "payments.reference")
_TEXT_ONLY = ("debtor.first_name", "debtor.last_name", "debtor.company", "debtor.city", "debtor.street",
              "debtor.contact_person", "debtor.representative", "debtor.account_holder", "reason", "memo")


def fits(target: str, kind: str, values: list[str], keys: list[str], *, sheet: bool) -> bool:
    """Whether a column of ``kind`` (its values, its header keys) may fill ``target``."""
    if kind in ("duplicate", "repeated"):
        return False  # a header name given twice; an XML value a record holds several times
    if kind == "empty":
        return target not in _IDS + ("principal_amount",)  # a required field needs values
    if target.endswith("date"):
        return kind == "date"
    if target in _AMOUNTS:
        if any(_NOT_MONEY.search(k) for k in keys):
            return False  # a cost centre of 5100 must not become a 5,100 EUR fee
        return kind == "amount" or (kind == "integer" and (sheet or any("cent" in k for k in keys)))
    if target == "currency":
        return kind == "currency"
    if target == "debtor.country":
        return kind == "country"
    if target == "debtor.iban":  # a few bad IBANs do not make it another column: they become findings
        return kind == "iban" or (kind == "text" and share(values, IBAN_SHAPE.match) >= 0.6)
    if target == "debtor.email":
        return kind == "email" or (kind in ("text", "empty") and share(values, lambda v: "@" in v) >= 0.5)
    if target == "debtor.phone":
        return kind in ("phone", "integer")
    if target == "debtor.kind":
        return kind == "partytype"
    if target == "debtor.postal_code":
        return kind in ("integer", "plz_city") or (kind == "text" and share(values, POSTCODE.match) >= 0.8)
    if target == "debtor.house_number":
        return share(values, HOUSE_NO.match) >= 0.8
    if target in _IDS:
        return kind in ("text", "integer") and share(values, lambda v: any(c.isdigit() for c in v)) >= 0.8
    if target in _TEXT_ONLY:
        return kind in ("text", "fullname", "plz_city", "street_no") or (kind == "address" and target in (
            "debtor.street", "debtor.city"))
    return kind not in ("date", "amount", "iban", "email", "partytype", "currency")


def parses_as_date(value: str, formats: tuple[str, ...]) -> str | None:
    """The first of ``formats`` that reads ``value``, or None."""
    for fmt in formats:
        try:
            datetime.strptime(value, fmt)
        except ValueError:
            continue
        return fmt
    return None
