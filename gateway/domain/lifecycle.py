"""The claim lifecycle as one explicit transition table (DESIGN.md section 4).

A claim's state is derived from its append-only events; this module only says which
``(from, to)`` moves exist and who may make them. ``check_transition`` raises
``IllegalTransition`` for anything else, before anything is written.
"""

from __future__ import annotations

import enum

from gateway.errors import IllegalTransition


class State(str, enum.Enum):
    RECEIVED = "received"
    HELD = "held"
    QUEUED = "queued"
    DELIVERING = "delivering"
    HANDED_OVER = "handed_over"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    DISPUTED = "disputed"
    INSTALMENT_PLAN = "instalment_plan"
    CLOSED_PAID = "closed_paid"
    CLOSED_UNCOLLECTIBLE = "closed_uncollectible"
    CANCELLED_BY_CLIENT = "cancelled_by_client"
    CANCELLED_BY_PARTNER = "cancelled_by_partner"
    REJECTED = "rejected"


class Actor(str, enum.Enum):
    CLIENT = "client"
    OPERATOR = "operator"
    PARTNER = "partner"
    SYSTEM = "system"


class Stage(str, enum.Enum):
    """Where an ``in_progress`` claim stands at the partner."""

    PRE_COURT = "pre_court"
    COURT_DUNNING = "court_dunning"
    ENFORCEMENT = "enforcement"
    LONG_TERM_MONITORING = "long_term_monitoring"


class PaymentState(str, enum.Enum):
    UNPAID = "unpaid"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"


S, A = State, Actor
TERMINAL = frozenset({S.CLOSED_PAID, S.CLOSED_UNCOLLECTIBLE, S.CANCELLED_BY_CLIENT, S.CANCELLED_BY_PARTNER,
                      S.REJECTED})
# States the partner works the claim in; any of them may move to any other or to an end.
_AT_PARTNER = (S.HANDED_OVER, S.IN_PROGRESS, S.PAUSED, S.DISPUTED, S.INSTALMENT_PLAN)
_PARTNER_TARGETS = (S.IN_PROGRESS, S.PAUSED, S.DISPUTED, S.INSTALMENT_PLAN, S.CLOSED_PAID,
                    S.CLOSED_UNCOLLECTIBLE, S.CANCELLED_BY_CLIENT, S.CANCELLED_BY_PARTNER, S.REJECTED)

_table: dict[tuple[State, State], frozenset[Actor]] = {
    # intake decides where a new claim goes
    (S.RECEIVED, S.QUEUED): frozenset({A.SYSTEM}),
    (S.RECEIVED, S.HELD): frozenset({A.SYSTEM}),
    (S.RECEIVED, S.REJECTED): frozenset({A.SYSTEM}),
    # a held claim waits for the client's release (a collection run) or an operator
    (S.HELD, S.QUEUED): frozenset({A.CLIENT, A.OPERATOR}),
    (S.HELD, S.CANCELLED_BY_CLIENT): frozenset({A.CLIENT, A.OPERATOR}),
    (S.HELD, S.REJECTED): frozenset({A.OPERATOR}),
    (S.QUEUED, S.HELD): frozenset({A.OPERATOR}),
    (S.QUEUED, S.CANCELLED_BY_CLIENT): frozenset({A.CLIENT, A.OPERATOR}),
    # The client reports a direct payment that leaves nothing open before the partner has the claim: it is
    # closed as paid here (``paid_before_handover``), never handed over, so nobody duns a debtor who paid.
    # Only the client's report does it (an operator acting for a client goes through the same use case).
    (S.HELD, S.CLOSED_PAID): frozenset({A.CLIENT}),
    (S.QUEUED, S.CLOSED_PAID): frozenset({A.CLIENT}),
    # delivery
    (S.QUEUED, S.DELIVERING): frozenset({A.SYSTEM}),
    (S.DELIVERING, S.HANDED_OVER): frozenset({A.SYSTEM, A.PARTNER}),
    (S.DELIVERING, S.FAILED): frozenset({A.SYSTEM}),
    (S.DELIVERING, S.REJECTED): frozenset({A.PARTNER}),
    (S.FAILED, S.QUEUED): frozenset({A.SYSTEM, A.OPERATOR}),
    (S.FAILED, S.CANCELLED_BY_CLIENT): frozenset({A.CLIENT, A.OPERATOR}),
    # The partner's word that it has the claim, when the gateway gave the delivery up (an answer lost, then
    # dead-lettered) or queued it again for the operator's retry: the receipt the gateway missed.
    (S.FAILED, S.HANDED_OVER): frozenset({A.PARTNER}),
    (S.FAILED, S.REJECTED): frozenset({A.PARTNER}),
    (S.QUEUED, S.HANDED_OVER): frozenset({A.PARTNER}),
    (S.QUEUED, S.REJECTED): frozenset({A.PARTNER}),
}
for _src in _AT_PARTNER:
    for _dst in _PARTNER_TARGETS:
        if _src is not _dst or _src is S.IN_PROGRESS:  # in_progress -> in_progress changes the stage
            _table[(_src, _dst)] = frozenset({A.PARTNER, A.OPERATOR})

TRANSITIONS: dict[tuple[State, State], frozenset[Actor]] = dict(_table)


def allowed_actors(src: State, dst: State) -> frozenset[Actor]:
    """Who may move a claim from ``src`` to ``dst`` (empty: nobody)."""
    return TRANSITIONS.get((src, dst), frozenset())


def check_transition(src: State, dst: State, actor: Actor) -> None:
    """Raise ``IllegalTransition`` unless ``actor`` may move a claim from ``src`` to ``dst``."""
    actors = allowed_actors(src, dst)
    if actor in actors:
        return
    if src in TERMINAL:
        reason = f"{src.value} is final"
    elif actors:
        reason = f"only {', '.join(sorted(a.value for a in actors))} may do that"
    else:
        reason = "no such transition"
    raise IllegalTransition(src.value, dst.value, actor.value, reason)
