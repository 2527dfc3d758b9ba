"""Limitation of a claim (Verjährung, BGB 195, 199, 203, 204, 209, 212): when it ends, from the claim's own dates.

Pure: ``today`` and the client's ``LimitationPolicy`` are passed in. The rule, as the gateway applies it:

- **Start.** The claim arose on its due date, else its invoice date (the creditor knows its own debtor, so
  BGB 199 I 2 adds nothing). The regular period (3 years, BGB 195) begins at the end of that year (199 I) and
  ends on 31 December three years later. A client may agree other periods (BGB 202), per client or per
  label, and may let them run from the day the claim arose instead of from the year's end.
- **Restart** (BGB 212 I 1): an acknowledgement, of which a part payment is one, starts the full period
  anew on the next day (BGB 187 I), not at a year's end: acknowledged on 10 May 2024, it ends on 10 May
  2027 (BGB 188 II; from 29 February, on 28 February, 188 III). It counts only while the period runs:
  after the end it restarts nothing, and before the period began (in the year the claim arose) it changes
  nothing, since the period has not started yet.
- **Suspension** (BGB 209: the days do not count): a court dunning order from its application until six
  months after the proceedings ended (204 I 3, 204 II); negotiations from their start until their end,
  and the period then ends three months after the negotiations at the earliest (203). A suspension that
  began after the period ended changes nothing. One without an end yet leaves the end open (``ends_on``
  None): the claim is not time-barred while it lasts.

Findings: ``time_barred`` (hold) once the end has passed, ``limitation_near`` (warning) when it ends within
the policy's window. Their messages show the rule's inputs (which date, which period, what restarted or
suspended it, the end): dates and periods only, never names or amounts.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Literal

import msgspec

from gateway.domain import findings as f
from gateway.domain.findings import Finding, Severity
from gateway.domain.model import Claim

TIME_BARRED = "time_barred"
LIMITATION_NEAR = "limitation_near"

Start = Literal["year_end", "arose"]
_Count = Annotated[int, msgspec.Meta(ge=0, le=1200)]
_DAY = timedelta(days=1)
_DUNNING_TAIL_MONTHS = 6  # BGB 204 II 1
_NEGOTIATION_FLOOR_MONTHS = 3  # BGB 203 S. 2
# The rule's own input dates: none may lie in the future (like the claim's other past dates).
INPUT_DATES = ("acknowledgement_date", "last_payment_date", "dunning_order_date", "dunning_order_end_date",
               "negotiation_start_date", "negotiation_end_date")


class Period(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A limitation period: ``years`` plus ``months``, from the end of the year or from the day the claim arose."""

    years: _Count = 3
    months: _Count = 0
    start: Start = "year_end"

    def __post_init__(self) -> None:
        if self.years * 12 + self.months == 0:
            raise ValueError("a limitation period must be longer than 0 (years and months are both 0)")

    @property
    def total_months(self) -> int:
        return self.years * 12 + self.months

    def words(self) -> str:
        """The period as a person reads it, e.g. '3 years from the end of the year'."""
        parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in ((self.years, "year"), (self.months, "month"))
                 if n]
        return " ".join(parts)


class LimitationPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A client's limitation settings (``clients.<id>.limitation``); the defaults are the statutory ones."""

    enabled: bool = True
    years: _Count = 3
    months: _Count = 0
    start: Start = "year_end"
    warn_months: _Count = 3  # ``limitation_near`` when the end is at most this many months away; 0: never
    by_label: dict[str, Period] = msgspec.field(default_factory=dict)  # claims with the label: their own period

    def __post_init__(self) -> None:
        if self.years * 12 + self.months == 0:
            raise ValueError("a limitation period must be longer than 0 (years and months are both 0)")

    def period_for(self, labels: Iterable[str]) -> Period:
        """The period of a claim: its first label with a period of its own, else the client's."""
        for label in labels:
            special = self.by_label.get(label)
            if special is not None:
                return special
        return Period(years=self.years, months=self.months, start=self.start)


STATUTORY = LimitationPolicy()


@dataclass(frozen=True)
class Suspension:
    field: str  # the canonical field of its start
    what: str  # in words
    begins: date
    ends: date | None  # None: still running
    days: int = 0  # days it added to the period


@dataclass(frozen=True)
class Limitation:
    """When a claim's limitation ends, and from what."""

    basis: str  # the canonical field the claim arose on: due_date or invoice_date
    arose: date
    period: Period
    label: str | None  # the label whose period applies, if any
    begins: date  # the day the (last) period began
    restart: tuple[str, date] | None  # the acknowledgement that started the last period: (field, date)
    suspensions: tuple[Suspension, ...]
    ends_on: date | None  # the last day the claim can be enforced; None while a suspension runs

    def explain(self) -> str:
        """The rule's inputs in words: dates and periods only."""
        basis = self.basis.replace("_", " ")
        kind = f"the label '{self.label}' period of" if self.label else "a period of"
        start = f"from the end of {self.arose.year}" if self.period.start == "year_end" else "from the next day"
        parts = [f"{basis} {self.arose.isoformat()}, {kind} {self.period.words()} {start}"]
        if self.restart is not None:
            field, day = self.restart
            parts.append(f"restarted by the {field.replace('_', ' ')} {day.isoformat()} "
                         f"({self.period.words()} from {self.begins.isoformat()})")
        for s in self.suspensions:
            if s.ends is None:
                parts.append(f"suspended by the {s.what} since {s.begins.isoformat()}, not ended yet")
            elif s.days:
                days = f"{s.days} day{'' if s.days == 1 else 's'}"
                parts.append(f"suspended {days} by the {s.what} ({s.begins.isoformat()} to {s.ends.isoformat()})")
        return "; ".join(parts)


def add_months(day: date, months: int) -> date:
    """The day with the same number ``months`` later, or that month's last day (BGB 188 II, III)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _basis(claim: Claim) -> tuple[str, date] | None:
    if claim.due_date is not None:
        return "due_date", claim.due_date
    if claim.invoice_date is not None:
        return "invoice_date", claim.invoice_date
    return None


def _restarts(claim: Claim) -> list[tuple[date, str]]:
    found = [(p.date, "part payment") for p in claim.payments_received]
    if claim.last_payment_date is not None:
        found.append((claim.last_payment_date, "last_payment_date"))
    if claim.acknowledgement_date is not None:
        found.append((claim.acknowledgement_date, "acknowledgement_date"))
    return sorted(found)


def _suspension_spans(claim: Claim) -> list[tuple[date, date | None, str, str, date | None]]:
    """(begins, ends or None, field, words, floor of the end or None), by begin."""
    spans: list[tuple[date, date | None, str, str, date | None]] = []
    if claim.dunning_order_date is not None:
        end = claim.dunning_order_end_date
        spans.append((claim.dunning_order_date, add_months(end, _DUNNING_TAIL_MONTHS) if end else None,
                      "dunning_order_date", "court dunning order", None))
    if claim.negotiation_start_date is not None:
        end = claim.negotiation_end_date
        spans.append((claim.negotiation_start_date, end, "negotiation_start_date", "negotiations",
                      add_months(end, _NEGOTIATION_FLOOR_MONTHS) if end else None))
    return sorted(spans, key=lambda s: s[0])


def _apply(begins: date, base_end: date,
           spans: list[tuple[date, date | None, str, str, date | None]]) -> tuple[date | None, list[Suspension]]:
    end: date | None = base_end
    used: list[Suspension] = []
    for start, stop, field, words, floor in spans:
        assert end is not None
        if start > end:  # began after the period had run out
            continue
        if stop is None:
            used.append(Suspension(field, words, start, None))
            end = None
            break
        days = max(0, (stop - max(start, begins)).days + 1)
        end += timedelta(days=days)
        if floor is not None and floor > end:
            end = floor
        used.append(Suspension(field, words, start, stop, days))
    return end, used


def limitation(claim: Claim, policy: LimitationPolicy = STATUTORY) -> Limitation | None:
    """When the claim's limitation ends, or None if it has neither a due date nor an invoice date."""
    basis = _basis(claim)
    if basis is None:
        return None
    field, arose = basis
    label = next((lb for lb in claim.labels if lb in policy.by_label), None)
    period = policy.period_for(claim.labels)
    months = period.total_months
    if period.start == "year_end":
        begins, base_end = date(arose.year + 1, 1, 1), add_months(date(arose.year, 12, 31), months)
    else:
        begins, base_end = arose + _DAY, add_months(arose, months)
    spans = _suspension_spans(claim)
    restart: tuple[str, date] | None = None
    if claim.payments_received or claim.acknowledgement_date or claim.last_payment_date:
        for day, source in _restarts(claim):
            if day < begins:  # in the year it arose: the period has not begun, nothing to restart
                continue
            end, _ = _apply(begins, base_end, spans)
            if end is not None and day > end:  # the period had run out: an acknowledgement restarts nothing
                continue
            begins, base_end, restart = day + _DAY, add_months(day, months), (source, day)
    end, used = _apply(begins, base_end, spans)
    return Limitation(basis=field, arose=arose, period=period, label=label, begins=begins, restart=restart,
                      suspensions=tuple(used), ends_on=end)


def _input_findings(claim: Claim, today: date) -> list[Finding]:
    found: list[Finding] = []
    for name in INPUT_DATES:
        value: date | None = getattr(claim, name)
        if value is not None and value > today:
            found.append(Finding(code=f.DATE_IN_FUTURE, field=name, message=f"the {name.replace('_', ' ')} is in "
                                 "the future", client_message=f"{name.replace('_', ' ')} {value} is in the future"))
    for start, stop in (("dunning_order_date", "dunning_order_end_date"),
                        ("negotiation_start_date", "negotiation_end_date")):
        begun, ended = getattr(claim, start), getattr(claim, stop)
        if ended is not None and begun is None:
            found.append(Finding(code=f.MISSING_FIELD, field=start, message=f"the {stop.replace('_', ' ')} needs "
                                 f"the {start.replace('_', ' ')} too"))
        elif ended is not None and ended < begun:
            found.append(Finding(code=f.DATE_ORDER, field=stop, message=f"the {stop.replace('_', ' ')} is before "
                                 f"the {start.replace('_', ' ')}",
                                 client_message=f"{stop.replace('_', ' ')} {ended} is before "
                                                f"{start.replace('_', ' ')} {begun}"))
    return found


@functools.lru_cache(maxsize=4096)
def _year_end_after(year: int, months: int) -> date:
    return add_months(date(year, 12, 31), months)


@functools.lru_cache(maxsize=256)
def _window_end(today: date, months: int) -> date:
    return add_months(today, months)


_QUIET_FROM: dict[tuple[date, int, int], int] = {}


def _quiet_from(today: date, months: int, warn_months: int) -> int:
    """The first year a claim may arise in for a period of ``months`` from the year's end to end after the window.

    The end grows with the year, so every later year is quiet too. Once per day and policy (cached).
    """
    key = (today, months, warn_months)
    year = _QUIET_FROM.get(key)
    if year is None:
        window = _window_end(today, warn_months) if warn_months else None
        year = today.year - months // 12 - 2  # its period ended last year at the latest: not quiet
        while True:
            end = _year_end_after(year, months)
            if end >= today and (window is None or end > window):
                break
            year += 1
        if len(_QUIET_FROM) >= 256:
            _QUIET_FROM.clear()
        _QUIET_FROM[key] = year
    return year


def plainly_not_near(claim: Claim, today: date, policy: LimitationPolicy = STATUTORY) -> bool:
    """True only if ``limitation_findings`` finds nothing, from a few reads (False: it has to be asked).

    The common claim has none of the rule's own inputs and arose from a due date in a recent year.
    """
    if (claim.acknowledgement_date is not None or claim.last_payment_date is not None
            or claim.dunning_order_date is not None or claim.dunning_order_end_date is not None
            or claim.negotiation_start_date is not None or claim.negotiation_end_date is not None):
        return False
    if not policy.enabled:
        return True
    # Part payments need no full computation here: one restarts the period only from the period's first day
    # (the year after the claim arose) on, so the period it starts ends later than the one it replaces, and
    # an end after the window stays after it.
    if policy.start != "year_end" or (policy.by_label and claim.labels):
        return False
    arose = claim.due_date or claim.invoice_date
    if arose is None:
        return True
    return _quiet_from(today, policy.years * 12 + policy.months, policy.warn_months) <= arose.year <= today.year


def limitation_findings(claim: Claim, today: date, policy: LimitationPolicy = STATUTORY) -> list[Finding]:
    """``time_barred`` (hold) or ``limitation_near`` (warning) for a claim validated on ``today``; bad inputs."""
    if plainly_not_near(claim, today, policy):
        return []
    return limitation_in_full(claim, today, policy)


def limitation_in_full(claim: Claim, today: date, policy: LimitationPolicy = STATUTORY) -> list[Finding]:
    """``limitation_findings`` without ``plainly_not_near`` in front (what it must always agree with)."""
    inputs = bool(claim.acknowledgement_date or claim.last_payment_date or claim.dunning_order_date
                  or claim.dunning_order_end_date or claim.negotiation_start_date or claim.negotiation_end_date)
    found = _input_findings(claim, today) if inputs else []
    if not policy.enabled or any(x.severity is Severity.ERROR for x in found):
        return found
    if not inputs and not claim.payments_received and policy.start == "year_end" and not (
            policy.by_label and claim.labels):
        # The common case on the ingest path, answered without building the explanation: a plain period
        # from the year's end that ends after the window.
        arose = claim.due_date or claim.invoice_date
        if arose is None:
            return found
        end = _year_end_after(arose.year, policy.years * 12 + policy.months)
        if end >= today and (not policy.warn_months or end > _window_end(today, policy.warn_months)):
            return found
    lim = limitation(claim, policy)
    if lim is None or lim.ends_on is None:
        return found
    if lim.ends_on < today:
        found.append(Finding(code=TIME_BARRED, field=lim.basis, severity=Severity.HOLD,
                             message=f"time-barred: the limitation period ended on {lim.ends_on.isoformat()} "
                                     f"({lim.explain()}); held until released with a reason"))
    elif policy.warn_months and lim.ends_on <= _window_end(today, policy.warn_months):
        found.append(Finding(code=LIMITATION_NEAR, field=lim.basis, severity=Severity.WARNING,
                             message=f"the limitation period ends on {lim.ends_on.isoformat()} "
                                     f"({lim.explain()}): the agency must act before then"))
    return found


def limitation_date(claim: Claim, policy: LimitationPolicy = STATUTORY) -> date | None:
    """The last day the claim can be enforced, if the rule is on and the end is known (for the partner batch)."""
    if not policy.enabled:
        return None
    if not (claim.payments_received or claim.acknowledgement_date or claim.last_payment_date
            or claim.dunning_order_date or claim.negotiation_start_date):
        # Nothing restarts or suspends it (most claims handed over): the period's plain end, as ``limitation``
        # computes it, from the cached month arithmetic (a partner batch asks this for every claim).
        basis = claim.due_date or claim.invoice_date
        if basis is None:
            return None
        period = policy.period_for(claim.labels)
        if period.start == "year_end":
            return _year_end_after(basis.year, period.total_months)
        return add_months(basis, period.total_months)
    lim = limitation(claim, policy)
    return lim.ends_on if lim is not None else None
