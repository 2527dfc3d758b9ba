"""The case account's arithmetic, property-based: random sequences of fees, costs, payments, write-offs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.account import Account, Entry, OverpaymentRefused, book, close_paid, opening

CENTS = st.integers(min_value=1, max_value=10_000_000)
STEP = st.tuples(st.sampled_from(list(Entry)), CENTS, st.booleans())


def _d(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _check(a: Account) -> None:
    assert a.open >= 0 and a.overpaid >= 0
    assert not (a.open and a.overpaid)
    owed = a.principal + a.fees + a.interest + a.agency_costs
    assert a.open - a.overpaid == owed - a.paid_direct - a.paid_agency - a.written_off


@settings(max_examples=400, deadline=None)
@given(principal=CENTS, steps=st.lists(STEP, max_size=30), close=st.booleans())
def test_open_is_the_sum_and_never_negative_unless_overpaid_on_purpose(principal: int,
                                                                      steps: list[tuple[Entry, int, bool]],
                                                                      close: bool) -> None:
    a = opening("EUR", _d(principal))
    balance = principal  # an independent ledger in cents
    explicit_overpayment = False
    for entry, cents, allow in steps:
        before = a
        open_cents = max(balance, 0)
        if entry is Entry.PAYMENT_DIRECT and cents > open_cents and not allow:
            with pytest.raises(OverpaymentRefused):
                book(a, entry, _d(cents), allow_overpayment=False)
            assert a == before  # a refusal books nothing
            continue
        a = book(a, entry, _d(cents), allow_overpayment=allow)
        if entry in (Entry.FEE, Entry.INTEREST, Entry.AGENCY_COSTS):
            balance += cents
        elif entry in (Entry.PAYMENT_DIRECT, Entry.PAYMENT_AGENCY):
            explicit_overpayment |= cents > open_cents  # allowed here: said so, or reported by the agency
            balance -= cents
        elif entry is Entry.WRITE_OFF:
            balance -= min(cents, open_cents)  # never written off below zero
        _check(a)
        assert a.open == _d(max(balance, 0)) and a.overpaid == _d(max(-balance, 0))
        assert a.overpaid == 0 or explicit_overpayment
    if close:
        a = close_paid(a)
        _check(a)
        assert a.open == 0


def test_payout_moves_no_debt_and_paid_closing_writes_the_rest_off() -> None:
    a = opening("EUR", Decimal("125.50"))
    a = book(a, Entry.PAYMENT_DIRECT, Decimal("50.00"), allow_overpayment=False)
    a = book(a, Entry.PAYMENT_AGENCY, Decimal("60.00"))
    a = book(a, Entry.PAYOUT, Decimal("55.00"))
    assert a.open == Decimal("15.50") and a.payouts == Decimal("55.00")
    closed = close_paid(a)
    assert closed.open == 0 and closed.written_off == Decimal("15.50")
    with pytest.raises(OverpaymentRefused, match="exceeds the open amount of 15.50 EUR"):
        book(a, Entry.PAYMENT_DIRECT, Decimal("100000"), allow_overpayment=False)
    over = book(a, Entry.PAYMENT_DIRECT, Decimal("20.00"), allow_overpayment=True)
    assert over.open == 0 and over.overpaid == Decimal("4.50")
