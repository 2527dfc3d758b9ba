"""Canonical claims for tests, valid unless a test changes them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import msgspec

from gateway.domain.model import Address, BankAccount, Claim, Debtor, Fee, FeeKind


def make_claim(ref: str = "R-1", **changes: Any) -> Claim:
    debtor = Debtor(first_name="Jürgen", last_name="Müller", birth_date=date(1980, 5, 17),
                    addresses=[Address(street="Hauptstraße", house_number="12a", postal_code="50667",
                                       city="Köln")],
                    emails=["j.mueller@example.org"],
                    bank_accounts=[BankAccount(iban="DE89370400440532013000")])
    claim = Claim(client_id="demo", creditor_reference=ref, principal_amount=Decimal("1234.56"), debtor=debtor,
                  invoice_number=f"INV-{ref}", invoice_date=date(2025, 3, 1), due_date=date(2025, 3, 15),
                  fees=[Fee(kind=FeeKind.DUNNING, amount=Decimal("5.00"), date=date(2025, 4, 1))])
    return msgspec.structs.replace(claim, **changes) if changes else claim
