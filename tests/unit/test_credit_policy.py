"""The traffic-light policy (gateway/domain/credit.py): each colour, per-bureau reasons, incomplete checks,
and the configurable parts (thresholds, which entries are hard, unknown persons, incomplete as yellow)."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.domain.credit import (BureauOutcome, BureauResult, CreditPolicy, NegativeEntry, Subject, SubjectKind,
                                   evaluate)


def answered(bureau: str, score: int | None = 90, *kinds: str, found: bool = True) -> BureauOutcome:
    return BureauOutcome(bureau=bureau, status="answered",
                         result=BureauResult(found=found, score=score, entries=[NegativeEntry(kind=k) for k in kinds]))


def silent(bureau: str, status: str = "timeout") -> BureauOutcome:
    return BureauOutcome(bureau=bureau, status=status, error=f"{status}: no answer")


POLICY = CreditPolicy()


def test_green_needs_every_answering_bureau_clean_and_above_the_threshold() -> None:
    v = evaluate(POLICY, [answered("a", 90), answered("b", 70)])
    assert (v.colour, v.incomplete) == ("green", False)
    assert [[r.code for r in b.reasons] for b in v.bureaus] == [["score_ok"], ["score_ok"]]
    assert evaluate(POLICY, [answered("a", 90), answered("b", 69)]).colour == "yellow"


@pytest.mark.parametrize("kind", ["insolvency", "enforcement", "payment_default"])
def test_a_hard_entry_at_any_bureau_is_red(kind: str) -> None:
    v = evaluate(POLICY, [answered("a", 95), answered("b", 95, kind)])
    assert v.colour == "red"
    assert [(r.code, r.colour, r.detail) for r in v.bureaus[1].reasons] == [("hard_entry", "red", kind),
                                                                              ("score_ok", "green", "95 >= 70")]
    assert v.bureaus[0].colour == "green"  # reasons stay per bureau


@pytest.mark.parametrize("outcome", [answered("b", 95, "soft_payment_default"), answered("b", 50),
                                     answered("b", None), answered("b", None, found=False),
                                     answered("b", 95, "something_new")])
def test_soft_signals_unknown_person_and_a_low_score_are_yellow(outcome: BureauOutcome) -> None:
    assert evaluate(POLICY, [answered("a"), outcome]).colour == "yellow"


def test_bureaus_that_did_not_answer_make_it_incomplete_not_coloured() -> None:
    v = evaluate(POLICY, [answered("a"), silent("b"), silent("c", "error")])
    assert (v.colour, v.incomplete) == ("green", True)
    assert [b.colour for b in v.bureaus] == ["green", None, None]
    assert v.bureaus[1].reasons[0].code == "no_answer"
    nobody = evaluate(POLICY, [silent("b"), silent("c", "error")])
    assert (nobody.colour, nobody.incomplete) == ("yellow", True)
    strict = CreditPolicy(incomplete_is_yellow=True)
    assert evaluate(strict, [answered("a"), silent("b")]).colour == "yellow"
    assert evaluate(strict, [answered("a", 90, "insolvency"), silent("b")]).colour == "red"


def test_the_policy_is_configurable() -> None:
    p = CreditPolicy(green_min_score=50, red_below_score=20, hard_entries=["insolvency"],
                     soft_entries=["enforcement", "payment_default"], unknown_person="green")
    assert evaluate(p, [answered("a", 55)]).colour == "green"
    assert evaluate(p, [answered("a", 19)]).colour == "red"
    assert evaluate(p, [answered("a", 90, "enforcement")]).colour == "yellow"
    assert evaluate(p, [answered("a", None, found=False)]).colour == "green"
    assert CreditPolicy(green_min_score=120, unknown_person="red", hard_entries=["bogus"]).problems() == [
        "green_min_score must be 0..100", "unknown_person must be green or yellow",
        "unknown entry kinds bogus (known: insolvency, enforcement, payment_default, soft_payment_default, "
        "collection_case, address_unverified)"]


def test_subject_identity_and_missing_fields() -> None:
    a = Subject(first_name="Erika", last_name="Mustermann", birth_date=date(1964, 8, 12), postal_code="51147",
                city="Köln")
    b = Subject(first_name=" ERIKA", last_name="mustermann ", birth_date=date(1964, 8, 12), postal_code="51147",
                city="Koeln")
    assert a.identity() == b.identity() and a.display_name() == "Erika Mustermann"
    assert Subject(last_name="X").problems() == ["first_name", "birth_date", "postal_code", "city"]
    assert Subject(kind=SubjectKind.BUSINESS, company="ACME GmbH", postal_code="1", city="B").problems() == []
