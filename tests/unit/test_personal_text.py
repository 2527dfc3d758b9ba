"""``personal_text.mention``: which of a debtor's values a free text contains (the field, never the value)."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.domain.model import Address, BankAccount, Debtor, DebtorKind
from gateway.domain.personal_text import mention

DEBTOR = Debtor(first_name="Jo", last_name="Weiß-Öztürk", birth_date=date(1975, 1, 2),
                addresses=[Address(street="Am Ring", house_number="4", postal_code="10115", city="Berlin")],
                phones=["+49 30 1234567"], emails=["jo@example.net"],
                bank_accounts=[BankAccount(iban="DE02120300000000202051", holder="Ayşe Öztürk")],
                customer_number="K-998877")


@pytest.mark.parametrize("text, field", [
    ("Anruf von WEISS-ÖZTÜRK", "last name"),        # "ß" casefolds to "ss": both spellings are the same name
    ("Anruf von weiß-öztürk", "last name"),
    ("Rückruf 030 / 123 45 67", "phone number"),    # the national form of +49 30 1234567
    ("Rückruf 0049301234567", "phone number"),
    ("IBAN de02 1203 0000 0000 2020 51", "IBAN"),
    ("Kontoinhaberin Ayşe Öztürk", "account holder"),
    ("geb. 2.1.1975", "date of birth"),
    ("Kundennr. k-998877", "customer number"),
    ("Ticket DSR-2026-0042, Art. 17 DSGVO", None),
    ("Jo hat angerufen", None),                     # two letters: too common a word to refuse a text for
    ("Berlin 10115", None),                         # city and postal code name nobody alone
    ("am Ringtausch beteiligt", None),              # a value inside a longer word is not the value
])
def test_mention(text: str, field: str | None) -> None:
    assert mention(text, DEBTOR) == field


def test_a_company_debtor_is_found_by_its_name_and_contact() -> None:
    firm = Debtor(kind=DebtorKind.BUSINESS, company="Nordlicht Handels GmbH", contact_person="Frau Kowalczyk")
    assert mention("Schreiben der nordlicht handels gmbh", firm) == "company"
    assert mention("laut Kowalczyk erledigt", firm) == "contact person"  # written "Frau Kowalczyk"
    assert mention("laut Frau Meier erledigt", firm) is None  # "Frau" alone names nobody
    assert mention("Handelsregister geprüft", firm) is None
