"""A claim's case account: what is owed, what was paid and booked, and what is open.

Pure arithmetic on ``Decimal``; no I/O. The store keeps the same fields as integers in minor units
(``claim_current``), folded from the claim's events by ``gateway.store.projection``.

    balance  = principal + fees + interest + agency costs - direct payments - agency payments - write-offs
    open     = balance if balance > 0 else 0
    overpaid = -balance if balance < 0 else 0

Payouts (what the agency passed on to the creditor) do not change what the debtor owes; they are
kept beside it. ``open`` is never negative: money beyond the open amount shows as ``overpaid``, and a
direct payment reported by the client may only get there when it says so (``allow_overpayment``).
Closing rules: a claim closed as paid owes nothing; what was still open then is booked as a write-off
(the agency settled for less, or reported less than it collected). Other endings (uncollectible,
cancelled, rejected) leave the account as it is: the debt goes back to the creditor, it is not paid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from decimal import Decimal

from gateway.errors import GatewayError

ZERO = Decimal(0)


class Entry(str, enum.Enum):
    """What a booking does to the account."""

    FEE = "fee"  # dunning and other fees of the creditor
    INTEREST = "interest"
    AGENCY_COSTS = "agency_costs"  # costs the agency adds (court fees, its own charges)
    PAYMENT_DIRECT = "payment_direct"  # the debtor paid the creditor
    PAYMENT_AGENCY = "payment_agency"  # the debtor paid the agency
    PAYOUT = "payout"  # the agency paid collected money out to the creditor
    WRITE_OFF = "write_off"


class OverpaymentRefused(GatewayError):
    """A direct payment above the open amount, not declared as an overpayment."""

    def __init__(self, amount: Decimal, open_amount: Decimal, currency: str) -> None:
        self.amount, self.open_amount, self.currency = amount, open_amount, currency
        super().__init__(f"the payment of {amount} {currency} exceeds the open amount of {open_amount} {currency}; "
                         "report it as an overpayment to book it anyway")


@dataclass(frozen=True)
class Account:
    """The amounts of one claim in its currency (all >= 0)."""

    currency: str
    principal: Decimal = ZERO
    fees: Decimal = ZERO
    interest: Decimal = ZERO
    agency_costs: Decimal = ZERO
    paid_direct: Decimal = ZERO
    paid_agency: Decimal = ZERO
    payouts: Decimal = ZERO
    written_off: Decimal = ZERO

    @property
    def balance(self) -> Decimal:
        """What the debtor still owes (negative: paid more than owed)."""
        return (self.principal + self.fees + self.interest + self.agency_costs
                - self.paid_direct - self.paid_agency - self.written_off)

    @property
    def open(self) -> Decimal:
        return max(self.balance, ZERO)

    @property
    def overpaid(self) -> Decimal:
        return max(-self.balance, ZERO)


def opening(currency: str, principal: Decimal, fees: Decimal = ZERO, paid_before: Decimal = ZERO) -> Account:
    """The account of a claim as submitted: payments the creditor received before count as direct."""
    return Account(currency=currency, principal=principal, fees=fees, paid_direct=paid_before)


def book(account: Account, entry: Entry, amount: Decimal, *, allow_overpayment: bool = True) -> Account:
    """The account after one booking; amounts must be positive.

    A write-off takes at most what is open. A direct payment above the open amount raises
    ``OverpaymentRefused`` unless ``allow_overpayment``; agency payments are facts reported after
    the money moved, so they are always booked (any excess shows as ``overpaid``).
    """
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"a booking needs a positive amount, got {amount}")
    a = account
    if entry is Entry.FEE:
        return replace(a, fees=a.fees + amount)
    if entry is Entry.INTEREST:
        return replace(a, interest=a.interest + amount)
    if entry is Entry.AGENCY_COSTS:
        return replace(a, agency_costs=a.agency_costs + amount)
    if entry is Entry.PAYMENT_DIRECT:
        if amount > a.open and not allow_overpayment:
            raise OverpaymentRefused(amount, a.open, a.currency)
        return replace(a, paid_direct=a.paid_direct + amount)
    if entry is Entry.PAYMENT_AGENCY:
        return replace(a, paid_agency=a.paid_agency + amount)
    if entry is Entry.PAYOUT:
        return replace(a, payouts=a.payouts + amount)
    return replace(a, written_off=a.written_off + min(amount, a.open))


def close_paid(account: Account) -> Account:
    """A claim closed as paid: whatever is still open is written off, so open is 0."""
    rest = account.open
    return replace(account, written_off=account.written_off + rest) if rest else account
