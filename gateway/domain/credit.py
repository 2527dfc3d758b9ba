"""Credit checks in the core: who is checked, what a bureau answers, and the traffic-light policy over the answers.

No I/O. Bureau adapters (``adapters/bureaus``) turn their wire formats into ``BureauResult``; the use case
(``services/credit.py``) collects one ``BureauOutcome`` per asked bureau and calls ``evaluate``.

The policy (``docs/credit.md`` has the table), per bureau, then over all:

- **red**: a bureau reports a *hard* negative entry (by default insolvency, enforcement, hard payment default),
  or a score below ``red_below_score`` (when set);
- **yellow**: a *soft* entry, a score below ``green_min_score``, the person unknown to a bureau, or no
  bureau answered at all;
- **green**: every bureau that answered knows the person, reports no negative entry and a score of at least
  ``green_min_score``.

The colour of the whole check is the worst bureau's. Bureaus that did not answer (timeout, error) do not
colour the check; they make it ``incomplete`` (and yellow when ``incomplete_is_yellow``).
Scores are normalised by each adapter to 0..100, higher is better.
"""

from __future__ import annotations

import enum
from datetime import date

import msgspec

GREEN, YELLOW, RED = "green", "yellow", "red"
_RANK = {GREEN: 0, YELLOW: 1, RED: 2}

# Stated legitimate interests (GDPR Art. 6(1)(f)); a client's config may narrow the list.
INTERESTS = ("contract_initiation", "claim_collection", "ongoing_contract", "payment_on_account")

# What a bureau can report; which of them are hard or soft is the policy's choice.
ENTRY_KINDS = ("insolvency", "enforcement", "payment_default", "soft_payment_default", "collection_case",
               "address_unverified")


class SubjectKind(str, enum.Enum):
    CONSUMER = "consumer"
    BUSINESS = "business"


class Subject(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The person or company asked about (personal data: stored only encrypted, never logged)."""

    kind: SubjectKind = SubjectKind.CONSUMER
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    birth_date: date | None = None
    street: str | None = None
    house_number: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str = "DE"

    def display_name(self) -> str:
        """The name as a claim's debtor would show it (the same blind index links checks to claims)."""
        if self.kind is SubjectKind.BUSINESS and self.company:
            return self.company
        return " ".join(p for p in (self.first_name, self.last_name) if p) or (self.company or "")

    def identity(self) -> str:
        """What makes two requests the same subject for the cache: name, birth date, postal code, normalised."""
        parts = (self.kind.value, self.display_name(), self.birth_date.isoformat() if self.birth_date else "",
                 self.postal_code or "", self.country)
        return "\x1f".join(" ".join(p.casefold().split()) for p in parts)

    def problems(self) -> list[str]:
        """Missing fields a bureau needs, as field names (empty: the subject can be checked)."""
        missing = []
        if self.kind is SubjectKind.BUSINESS:
            if not self.company:
                missing.append("company")
        else:
            missing += [f for f in ("first_name", "last_name") if not getattr(self, f)]
            if self.birth_date is None:
                missing.append("birth_date")
        missing += [f for f in ("postal_code", "city") if not getattr(self, f)]
        return missing


class NegativeEntry(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # one of ENTRY_KINDS (an unknown kind from a bureau is kept and treated as soft)
    date: date | None = None
    amount: str | None = None  # decimal string, as the bureau gave it
    detail: str | None = None


class BureauResult(msgspec.Struct, frozen=True, kw_only=True):
    """One bureau's answer about one subject."""

    found: bool  # False: the bureau does not know the person ("unknown person")
    score: int | None = None  # normalised 0..100, higher is better
    entries: list[NegativeEntry] = msgspec.field(default_factory=list)
    reference: str | None = None  # the bureau's id of this query (for disputes and invoices)


class BureauOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What came of asking one bureau: a result, or why there is none."""

    bureau: str
    status: str  # answered | timeout | error
    result: BureauResult | None = None
    error: str | None = None  # a code and the gateway's own text (never the bureau's body)
    elapsed_ms: int = 0


class CreditPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The configurable traffic light (``clients.<id>.credit.policy``)."""

    green_min_score: int = 70
    red_below_score: int | None = None  # None: a low score alone is never red
    hard_entries: list[str] = msgspec.field(
        default_factory=lambda: ["insolvency", "enforcement", "payment_default"])
    soft_entries: list[str] = msgspec.field(
        default_factory=lambda: ["soft_payment_default", "collection_case", "address_unverified"])
    unknown_person: str = YELLOW  # colour when a bureau does not know the person: yellow or green
    incomplete_is_yellow: bool = False  # a bureau that did not answer makes an otherwise green check yellow

    def problems(self) -> list[str]:
        """What is wrong with the policy's values (empty: usable)."""
        out = []
        if not 0 <= self.green_min_score <= 100:
            out.append("green_min_score must be 0..100")
        if self.red_below_score is not None and not 0 <= self.red_below_score <= self.green_min_score:
            out.append("red_below_score must be 0..green_min_score")
        if self.unknown_person not in (GREEN, YELLOW):
            out.append("unknown_person must be green or yellow")
        unknown = sorted(k for k in {*self.hard_entries, *self.soft_entries} if k not in ENTRY_KINDS)
        if unknown:
            out.append(f"unknown entry kinds {', '.join(unknown)} (known: {', '.join(ENTRY_KINDS)})")
        return out


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """Why one bureau's answer has its colour: a stable code, the colour it gives, and a detail."""

    code: str  # score_ok, score_low, score_red, hard_entry, soft_entry, unknown_person, no_answer
    colour: str | None  # None: this reason does not colour the check (a bureau that did not answer)
    detail: str = ""


class BureauVerdict(msgspec.Struct, frozen=True, kw_only=True):
    bureau: str
    status: str
    colour: str | None
    reasons: list[Reason]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    colour: str
    incomplete: bool  # some asked bureau did not answer
    bureaus: list[BureauVerdict]


def worst(colours: list[str]) -> str:
    return max(colours, key=_RANK.__getitem__) if colours else GREEN


def judge(policy: CreditPolicy, outcome: BureauOutcome) -> BureauVerdict:
    """The colour and reasons of one bureau's outcome."""
    r = outcome.result
    if outcome.status != "answered" or r is None:
        return BureauVerdict(bureau=outcome.bureau, status=outcome.status, colour=None,
                             reasons=[Reason(code="no_answer", colour=None, detail=outcome.error or outcome.status)])
    if not r.found:
        return BureauVerdict(bureau=outcome.bureau, status=outcome.status, colour=policy.unknown_person,
                             reasons=[Reason(code="unknown_person", colour=policy.unknown_person)])
    reasons: list[Reason] = []
    for e in r.entries:
        hard = e.kind in policy.hard_entries
        reasons.append(Reason(code="hard_entry" if hard else "soft_entry", colour=RED if hard else YELLOW,
                              detail=e.kind))
    if r.score is None:
        reasons.append(Reason(code="no_score", colour=YELLOW))
    elif policy.red_below_score is not None and r.score < policy.red_below_score:
        reasons.append(Reason(code="score_red", colour=RED, detail=f"{r.score} < {policy.red_below_score}"))
    elif r.score < policy.green_min_score:
        reasons.append(Reason(code="score_low", colour=YELLOW, detail=f"{r.score} < {policy.green_min_score}"))
    else:
        reasons.append(Reason(code="score_ok", colour=GREEN, detail=f"{r.score} >= {policy.green_min_score}"))
    return BureauVerdict(bureau=outcome.bureau, status=outcome.status,
                         colour=worst([x.colour for x in reasons if x.colour]), reasons=reasons)


def evaluate(policy: CreditPolicy, outcomes: list[BureauOutcome]) -> Verdict:
    """The traffic light over all asked bureaus' outcomes."""
    per = [judge(policy, o) for o in outcomes]
    answered = [v.colour for v in per if v.colour is not None]
    incomplete = len(answered) < len(per)
    if not answered:
        colour = YELLOW  # nobody answered: nothing is known, which is not "no concerns"
    else:
        colour = worst(answered)
        if incomplete and policy.incomplete_is_yellow:
            colour = worst([colour, YELLOW])
    return Verdict(colour=colour, incomplete=incomplete, bureaus=per)
