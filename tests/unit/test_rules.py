from datetime import date
from decimal import Decimal

import msgspec
import pytest

from gateway.domain.findings import Outcome, Severity, outcome_of
from gateway.domain.iban import iban_problem
from gateway.domain.model import Address, Debtor, DebtorKind, Payment, to_minor
from gateway.domain.rules import age_on, validate_claim
from tests.factories import make_claim

TODAY = date(2026, 11, 23)


def codes(claim: object) -> set[str]:
    return {f.code for f in validate_claim(claim, TODAY)}  # type: ignore[arg-type]


def test_valid_claim_has_no_findings() -> None:
    assert validate_claim(make_claim(), TODAY) == []


def test_total_open_amount_is_computed() -> None:
    claim = make_claim(payments_received=[Payment(amount=Decimal("100.00"), date=date(2025, 5, 1))])
    assert claim.total_open_amount == Decimal("1234.56") + Decimal("5.00") - Decimal("100.00")
    assert to_minor(claim.total_open_amount, "EUR") == 113956


@pytest.mark.parametrize("iban,ok", [
    ("DE89370400440532013000", True), ("DE89 3704 0044 0532 0130 00", True), ("de89370400440532013000", True),
    ("DE89370400440532013001", False), ("DE8937040044053201300", False), ("XX", False),
    ("GB82WEST12345698765432", True), ("AT611904300234573201", True),
])
def test_iban_checksum(iban: str, ok: bool) -> None:
    assert (iban_problem(iban) is None) is ok


def test_bad_iban_rejects_with_field() -> None:
    claim = make_claim()
    claim.debtor.bank_accounts[0].iban = "DE89370400440532013001"
    [finding] = validate_claim(claim, TODAY)
    assert (finding.code, finding.field, finding.severity) == ("invalid_iban", "debtor.bank_accounts[0].iban",
                                                               Severity.ERROR)


def test_minor_without_representative_is_held_not_rejected() -> None:
    claim = make_claim()
    claim.debtor.birth_date = date(2010, 1, 1)
    found = validate_claim(claim, TODAY)
    assert [f.code for f in found] == ["debtor_minor"]
    assert outcome_of(found) is Outcome.HELD
    claim.debtor.representative = "Eltern: Anna Müller"
    assert validate_claim(claim, TODAY) == []


def test_eighteenth_birthday_is_the_boundary() -> None:
    assert age_on(date(2008, 11, 23), TODAY) == 18
    assert age_on(date(2008, 11, 24), TODAY) == 17


def test_amounts_and_dates() -> None:
    assert "amount_not_positive" in codes(make_claim(principal_amount=Decimal("0")))
    assert "invalid_amount" in codes(make_claim(principal_amount=Decimal("1.234")))
    assert "date_in_future" in codes(make_claim(invoice_date=date(2027, 1, 1)))
    assert "invalid_currency" in codes(make_claim(currency="EURO"))


def test_contact_rules() -> None:
    debtor = Debtor(first_name="A", last_name="B", birth_date=date(1990, 1, 1))
    assert codes(make_claim(debtor=debtor)) == {"no_contact"}
    with_mail = msgspec.structs.replace(debtor, emails=["a@b.de"])
    assert codes(make_claim(debtor=with_mail)) == set()
    bad_plz = msgspec.structs.replace(debtor, addresses=[Address(street="X", postal_code="123", city="Y")])
    assert codes(make_claim(debtor=bad_plz)) == {"invalid_value"}


def test_business_needs_company_and_consumer_gets_flagged() -> None:
    biz = Debtor(kind=DebtorKind.BUSINESS, emails=["x@y.de"])
    assert codes(make_claim(debtor=biz)) == {"missing_field"}
    consumer = Debtor(last_name="B", emails=["x@y.de"])
    found = validate_claim(make_claim(debtor=consumer), TODAY)
    assert [(f.code, f.severity) for f in found] == [("consumer_incomplete", Severity.WARNING)]
    assert outcome_of(found) is Outcome.ACCEPTED
