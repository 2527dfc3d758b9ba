from itertools import product

import pytest

from gateway.domain.lifecycle import TERMINAL, TRANSITIONS, Actor, State, allowed_actors, check_transition
from gateway.errors import IllegalTransition


def test_every_pair_outside_the_table_is_refused_for_every_actor() -> None:
    refused = 0
    for src, dst, actor in product(State, State, Actor):
        if actor in TRANSITIONS.get((src, dst), frozenset()):
            check_transition(src, dst, actor)
        else:
            with pytest.raises(IllegalTransition):
                check_transition(src, dst, actor)
            refused += 1
    assert refused > 0


def test_terminal_states_have_no_way_out() -> None:
    for src in TERMINAL:
        assert not [dst for dst in State if allowed_actors(src, dst)], src


@pytest.mark.parametrize("src,dst,actor,ok", [
    (State.RECEIVED, State.QUEUED, Actor.SYSTEM, True),
    (State.HELD, State.QUEUED, Actor.CLIENT, True),
    (State.HELD, State.QUEUED, Actor.PARTNER, False),
    (State.QUEUED, State.DELIVERING, Actor.CLIENT, False),
    (State.DELIVERING, State.HANDED_OVER, Actor.SYSTEM, True),
    (State.HANDED_OVER, State.CLOSED_PAID, Actor.PARTNER, True),
    (State.HANDED_OVER, State.CLOSED_PAID, Actor.CLIENT, False),
    (State.IN_PROGRESS, State.IN_PROGRESS, Actor.PARTNER, True),  # a new stage
    (State.CLOSED_PAID, State.IN_PROGRESS, Actor.OPERATOR, False),
    (State.QUEUED, State.HANDED_OVER, Actor.SYSTEM, False),  # no skipping delivery
    (State.FAILED, State.HANDED_OVER, Actor.PARTNER, True),  # the partner has it: the receipt we missed
    (State.FAILED, State.HANDED_OVER, Actor.SYSTEM, False),
    (State.QUEUED, State.HANDED_OVER, Actor.PARTNER, True),
    # paid in full before the handover: the client's report closes it; nobody else closes a claim not yet sent
    (State.QUEUED, State.CLOSED_PAID, Actor.CLIENT, True),
    (State.HELD, State.CLOSED_PAID, Actor.CLIENT, True),
    (State.QUEUED, State.CLOSED_PAID, Actor.PARTNER, False),
    (State.HELD, State.CLOSED_PAID, Actor.SYSTEM, False),
    (State.FAILED, State.CLOSED_PAID, Actor.CLIENT, False),  # the partner may have it: it closes it
    (State.DELIVERING, State.CLOSED_PAID, Actor.CLIENT, False),
])
def test_examples(src: State, dst: State, actor: Actor, ok: bool) -> None:
    if ok:
        check_transition(src, dst, actor)
    else:
        with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
            check_transition(src, dst, actor)
