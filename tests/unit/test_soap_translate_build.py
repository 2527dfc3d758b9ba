"""``translate.build`` makes the same object as the SOAP type's own constructor, for every type of both contracts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from spyne import ComplexModelBase

from gateway.entrypoints.soap import translate as tr
from gateway.entrypoints.soap import types as t
from gateway.entrypoints.soap import v2
from gateway.entrypoints.soap.app import build_application_v2

SAMPLE = {"index": 3, "creditor_reference": "R-1", "claim_id": 7, "existing": False, "findings": [],
          "total_amount": Decimal("1.50"), "code": "x", "message": "m", "submission": "S1"}


def _types() -> list[Any]:
    build_application_v2(None)  # type: ignore[arg-type]  # the v2 types exist once the contract is built
    found = [c for c in vars(t).values() if isinstance(c, type) and issubclass(c, ComplexModelBase)
             and c.__module__ == t.__name__ and not c.__name__.startswith("_")]
    derived = v2.Derived()
    found += [derived.of(c) for c in list(found)]
    return [getattr(c, "__orig__", None) or c for c in found]


@pytest.mark.parametrize("cls", _types(), ids=lambda c: f"{c.get_namespace()[-2:]}-{c.__name__}")
def test_build_makes_what_the_constructor_makes(cls: Any) -> None:
    members = cls.get_flat_type_info(cls)
    given = {k: v for k, v in SAMPLE.items() if k in members}
    for values in ({}, given, {**given, "not_a_member": 1}):
        built, made = tr.build(cls, **values), cls(**values)
        assert type(built) is type(made)
        assert built.__dict__ == made.__dict__


def test_the_answer_types_are_built_without_spyne_s_constructor() -> None:
    for cls in (t.SubmitResult, t.ClaimResult, t.Finding):
        tr.build(cls)
        assert tr._BLANK[cls] is not None
