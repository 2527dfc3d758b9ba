"""Does a person's free text name a debtor? For text that must outlive the debtor's data.

An erasure's reason stays in the claim's history after the claim's key (and with it every sealed text) is
destroyed: it must not hold the data it erases. ``mention`` finds the debtor's own values in such a text: names,
street, e-mail addresses, phone numbers, IBANs, account holders, the customer number and the date of birth.
Matched whole-word and case-blind, phone numbers and IBANs also without their spaces and dashes. City, postal
code and country are left out: a ticket number or a branch name would collide with them, and alone they name
nobody. The answer names the field, never the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from gateway.domain.model import Debtor

_MIN_LETTERS = 3  # "Li" or "Ng" match too many words to refuse a text for them; a longer name does not
_MIN_DIGITS = 6   # shorter numbers (house numbers, amounts, years) are no identifiers on their own


# Words of a person's name field that name nobody: salutations, titles, particles.
_FORMS = frozenset({"frau", "herr", "herrn", "fr", "hr", "dr", "prof", "dipl", "ing", "mr", "mrs", "ms", "von", "van",
                    "der", "den", "de", "zu", "und"})


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _compact(text: str) -> str:
    return re.sub(r"[\s\-/().]+", "", text)


def _values(d: Debtor) -> Iterator[tuple[str, str]]:
    named = (("first name", d.first_name), ("last name", d.last_name), ("company", d.company),
             ("representative", d.representative), ("contact person", d.contact_person),
             ("customer number", d.customer_number))
    yield from ((f, v) for f, v in named if v)
    people = (("first name", d.first_name), ("last name", d.last_name), ("representative", d.representative),
              ("contact person", d.contact_person), *(("account holder", b.holder) for b in d.bank_accounts))
    for f, v in people:  # "Frau Kowalczyk" is named by "Kowalczyk" alone, "Anna-Lena Berg" by "Berg"
        if v and len(words := v.split()) > 1:
            yield from ((f, w) for w in words if w.casefold().strip(".") not in _FORMS)
    for a in d.addresses:
        if a.street:
            yield "street", a.street
        if a.address_extra:
            yield "address line", a.address_extra
    yield from (("e-mail address", e) for e in d.emails)
    yield from (("phone number", p) for p in d.phones)
    for b in d.bank_accounts:
        yield "IBAN", b.iban
        if b.holder:
            yield "account holder", b.holder
    if d.birth_date:
        born = d.birth_date
        for shown in (born.isoformat(), f"{born.day:02d}.{born.month:02d}.{born.year}",
                      f"{born.day}.{born.month}.{born.year}"):
            yield "date of birth", shown


def _counts(value: str) -> bool:
    return sum(ch.isalpha() for ch in value) >= _MIN_LETTERS or sum(ch.isdigit() for ch in value) >= _MIN_DIGITS


def mention(text: str, debtor: Debtor) -> str | None:
    """The first of the debtor's fields whose value ``text`` contains (a field name), or None."""
    said = _norm(text)
    said_compact = _compact(said)
    for field, raw in _values(debtor):
        value = _norm(raw)
        if not _counts(value):
            continue
        if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", said):
            return field
        compact = _compact(value)
        if field == "IBAN" and len(compact) >= _MIN_DIGITS and compact in said_compact:
            return field
        if field == "phone number":
            core = _national(value)
            if len(core) >= _MIN_DIGITS and core in re.sub(r"\D", "", said):
                return field
    return None


def _national(phone: str) -> str:
    """A phone number's digits without the country code or trunk prefix: +49 30 1234, 0049 30 1234 and
    030 1234 are the same number."""
    digits = re.sub(r"\D", "", phone)
    for prefix in ("0049", "49", "0"):
        if digits.startswith(prefix) and (prefix != "49" or phone.lstrip().startswith("+")):
            return digits[len(prefix):]
    return digits
