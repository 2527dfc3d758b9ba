"""Grouping: consecutive rows sharing a key become one claim with invoices, or share one debtor.

``mode: invoices``: the rows of a key form ONE claim. Claim-level fields come from the group's
first row; each row becomes an ``Invoice`` (its invoice_number, invoice_date, due_date,
principal_amount, reason); ``principal_amount`` is their sum; fees and payments of all rows are
kept as separate entries (so ``total_open_amount`` adds up); invoice_date, due_date,
first_dunning_date and default_date are the earliest, last_dunning_date the latest; labels are
united; disputed if any row is. A row with errors rejects the whole group.
``mode: claims``: every row stays its own claim, with the debtor of the group's first row.

Only consecutive rows group (the file streams; memory holds one group). A key that comes back
after other keys is an error on that row: the file must be sorted by the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import msgspec

from gateway.domain.findings import Finding
from gateway.domain.model import Claim, Invoice
from gateway.readers.base import SourceRow

if TYPE_CHECKING:
    from gateway.mapping.engine import MappedRow

GROUP_NOT_CONTIGUOUS = "group_not_contiguous"


def group_rows(mode: str, pairs: Iterable[tuple[SourceRow, MappedRow]], key: list[int],
               label: str) -> Iterator[MappedRow]:
    """Merge runs of rows with the same key (an empty key never groups)."""
    merge = _merge_invoices if mode == "invoices" else _share_debtor
    seen: dict[tuple[str, ...], int] = {}  # key -> first row of its (finished) group
    current: tuple[str, ...] | None = None
    members: list[MappedRow] = []
    for src, mapped in pairs:
        k = tuple(src.values[i].strip() if i < len(src.values) else "" for i in key)
        if members and k == current and any(k):
            members.append(mapped)
            continue
        if members:
            yield from merge(members)
        members, current = [mapped], k
        if any(k):
            if k in seen:
                mapped.findings.append(Finding(
                    code=GROUP_NOT_CONTIGUOUS, row=mapped.row, column=label,
                    message=f"{label} '{' '.join(k)}' was already grouped from row {seen[k]}: the rows of one "
                            f"{label} must follow each other (sort the file by {label})"))
                mapped.claim = None
            else:
                seen[k] = mapped.row
    if members:
        yield from merge(members)


def _merge_invoices(members: list[MappedRow]) -> Iterator[MappedRow]:
    first = members[0]
    findings = [f for m in members for f in m.findings]
    claims = [m.claim for m in members]
    if any(c is None for c in claims):
        bad = ", ".join(str(m.row) for m in members if m.claim is None)
        if first.claim is not None or len(members) > 1:
            findings.append(Finding(code="group_rejected", row=first.row,
                                    message=f"the claim of rows {first.row}-{members[-1].row} is rejected "
                                            f"because row(s) {bad} have errors"))
        yield msgspec.structs.replace(first, claim=None, findings=findings)
        return
    ok = [c for c in claims if c is not None]
    currencies = sorted({c.currency for c in ok})
    if len(currencies) > 1:  # one claim has one currency: these invoices cannot be summed
        findings.append(Finding(code="group_rejected", row=first.row, field="currency",
                                message=f"rows {first.row}-{members[-1].row} form one claim but are in "
                                        f"{' and '.join(currencies)}"))
        yield msgspec.structs.replace(first, claim=None, findings=findings)
        return
    yield msgspec.structs.replace(first, claim=merge_claims(ok), findings=findings)


def merge_claims(claims: list[Claim]) -> Claim:
    """One claim from the claims of a group's rows (see the module docstring for each field)."""
    base = claims[0]
    invoices = [Invoice(amount=c.principal_amount, number=c.invoice_number, date=c.invoice_date,
                        due_date=c.due_date, description=c.reason) for c in claims]
    labels = list(dict.fromkeys(label for c in claims for label in c.labels))
    return msgspec.structs.replace(
        base, invoices=invoices, principal_amount=sum((c.principal_amount for c in claims), Decimal(0)),
        fees=[f for c in claims for f in c.fees], payments_received=[p for c in claims for p in c.payments_received],
        invoice_date=_pick(min, [c.invoice_date for c in claims]), due_date=_pick(min, [c.due_date for c in claims]),
        first_dunning_date=_pick(min, [c.first_dunning_date for c in claims]),
        last_dunning_date=_pick(max, [c.last_dunning_date for c in claims]),
        default_date=_pick(min, [c.default_date for c in claims]),
        disputed=any(c.disputed for c in claims), labels=labels)


def _pick(how: Callable[[list[date]], date], dates: list[date | None]) -> date | None:
    known = [d for d in dates if d is not None]
    return how(known) if known else None


def _share_debtor(members: list[MappedRow]) -> Iterator[MappedRow]:
    debtor = members[0].claim.debtor if members[0].claim is not None else None
    yield members[0]
    for m in members[1:]:
        if debtor is None or m.claim is None:
            yield m
        else:
            yield msgspec.structs.replace(m, claim=msgspec.structs.replace(m.claim, debtor=debtor))
