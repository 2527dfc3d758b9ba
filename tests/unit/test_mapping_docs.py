"""docs/mapping.md lists every finding code, every field option (transform) and every built-in map value."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from gateway.domain import findings
from gateway.mapping.spec import FieldSpec
from gateway.mapping.valuemaps import _CLAIM_TYPES, _COUNTRY_NAMES, _SALUTATIONS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "mapping.md").read_text(encoding="utf-8")


def test_every_finding_code_is_documented() -> None:
    codes = {v for k, v in vars(findings).items() if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z_]+", v)}
    codes |= {"group_not_contiguous", "group_rejected", "awaiting_release", "input_error"}
    assert len(codes) > 20
    assert not {c for c in codes if f"`{c}`" not in DOC}


def test_every_field_option_is_documented() -> None:
    options = {f.encode_name for f in msgspec.structs.fields(FieldSpec)}
    assert not {o for o in options if f"`{o}`" not in DOC}


def test_every_builtin_map_value_is_documented() -> None:
    missing = [name for table in (_COUNTRY_NAMES, _SALUTATIONS, _CLAIM_TYPES) for code, names in table.items()
               for name in (code, *names) if name not in DOC]
    assert not missing


def test_dates_of_zeros_are_empty_as_documented() -> None:
    from gateway.mapping.transforms import date_parser

    parse = date_parser(("%d%m%Y", "%d.%m.%Y", "%Y-%m-%d"))
    assert [parse(v) for v in ("00000000", "00.00.0000", "0000-00-00")] == [None, None, None]
    assert "`00000000`" in DOC
