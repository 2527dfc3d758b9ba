"""Row conditions (``when:``, ``policy.hold_when``, ``policy.partners``) compiled into fast predicates."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.domain.findings import Finding, Severity

if TYPE_CHECKING:
    from gateway.mapping.spec import Condition, MappingSpec

Predicate = Callable[[list[str]], bool]
FindColumn = Callable[[str, str], int]  # (column, what reads it) -> position; raises InputError if absent
AWAITING_RELEASE = "awaiting_release"


def compile_condition(cond: Condition, find: FindColumn, what: str) -> Predicate:
    """A predicate over a row's values; the cell is trimmed (and case-folded with ``ignore_case``)."""
    i = find(cond.column, what)
    fold: Callable[[str], str] = str.casefold if cond.ignore_case else _same
    if cond.equals is not None:
        want = fold(cond.equals.strip())
        return lambda values: fold(values[i].strip()) == want
    if cond.not_equals is not None:
        avoid = fold(cond.not_equals.strip())
        return lambda values: fold(values[i].strip()) != avoid
    if cond.in_ is not None:
        allowed = frozenset(fold(v.strip()) for v in cond.in_)
        return lambda values: fold(values[i].strip()) in allowed
    if cond.not_in is not None:
        refused = frozenset(fold(v.strip()) for v in cond.not_in)
        return lambda values: fold(values[i].strip()) not in refused
    if cond.matches is not None:
        rx = re.compile(cond.matches, re.IGNORECASE if cond.ignore_case else 0)
        return lambda values: rx.search(values[i].strip()) is not None
    assert cond.empty is not None  # the loader allows exactly one operator
    if cond.empty:
        return lambda values: not values[i].strip()
    return lambda values: bool(values[i].strip())


def _same(s: str) -> str:
    return s


def describe(cond: Condition) -> str:
    """The condition as a clerk reads it: Status = 'gesperrt'."""
    for op, word in (("equals", "="), ("not_equals", "!="), ("in_", "in"), ("not_in", "not in"),
                     ("matches", "matches")):
        value = getattr(cond, op)
        if value is not None:
            return f"{cond.column} {word} {value!r}"
    return f"{cond.column} is {'empty' if cond.empty else 'not empty'}"


class CompiledPolicy:
    """The per-client policy bound to a header: hold rows that match, pick a partner per row."""

    def __init__(self, hold: Predicate | None = None, hold_reason: str = "",
                 partners: list[tuple[Predicate, str]] | None = None) -> None:
        self.hold, self.hold_reason, self.partners = hold, hold_reason, partners or []
        self.active = hold is not None or bool(self.partners)

    def held(self, row: int) -> Finding:
        """The finding of a row ``hold`` matches."""
        return Finding(code=AWAITING_RELEASE, severity=Severity.HOLD, row=row,
                       message=f"held until the client releases it ({self.hold_reason})")

    def apply(self, values: list[str], claim_kw: dict[str, Any], findings: list[Finding], row: int) -> None:
        """Add the hold finding and the partner the rules pick (a partner the row names wins)."""
        if self.hold is not None and self.hold(values):
            findings.append(self.held(row))
        if "partner_id" not in claim_kw:
            for matches, partner in self.partners:
                if matches(values):
                    claim_kw["partner_id"] = partner
                    break


def compile_policy(spec: MappingSpec, find: Any) -> CompiledPolicy:
    """``find`` is the header index (its ``find(column, what)`` method)."""
    policy = spec.policy
    hold = compile_condition(policy.hold_when, find.find, "policy.hold_when") if policy.hold_when else None
    reason = f"policy.hold_when: {describe(policy.hold_when)}" if policy.hold_when else ""
    partners = [(compile_condition(r.when, find.find, f"policy.partners[{i}].when"), r.partner)
                for i, r in enumerate(policy.partners)]
    return CompiledPolicy(hold, reason, partners)
