"""``mapping suggest`` drafts a working mapping for every golden fixture, without help, for the core fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.domain.model import Claim
from gateway.mapping import compile_mapping, load_mapping, parse_mapping
from gateway.mapping.sample import read_sample
from gateway.mapping.suggest import normalize, suggest_mapping
from gateway.readers import open_reader
from gateway.mapping.engine import date_columns
from tests.integration.test_mapping_golden import CASES, FIXTURES


def _core(claim: Claim) -> dict[str, Any]:
    d = claim.debtor
    a = d.addresses[0] if d.addresses else None
    text = {"last_name": d.last_name, "first_name": d.first_name, "company": d.company,
            "street": a and a.street, "house_number": a and a.house_number, "postal_code": a and a.postal_code,
            "city": a and a.city, "country": a and a.country}
    return {"principal_amount": claim.principal_amount, "invoice_date": claim.invoice_date,
            "due_date": claim.due_date, **{k: v.casefold() if isinstance(v, str) else v for k, v in text.items()}}


def _claims(path: Path, spec: Any) -> dict[int, Claim | None]:
    spec = msgspec.structs.replace(spec, group=None)  # compare row by row
    with open_reader(path, spec.format, date_columns=date_columns(spec)) as reader:
        mapper = compile_mapping(spec, reader.header, file=path.name, header_row=reader.header_row)
        return {m.row: m.claim for m in (mapper.map_row(src, "x") for src in reader)}


def test_normalize() -> None:
    assert [normalize(h) for h in ("Geb.-Datum", "Kd-Nr", "Str.", "Fällig am", "PLZ/Ort")] == [
        "gebdatum", "kdnr", "str", "faelligam", "plzort"]


@pytest.mark.parametrize(("client", "input_name"), CASES)
def test_suggest_drafts_the_core_fields(client: str, input_name: str) -> None:
    path = FIXTURES / client / input_name
    golden = load_mapping(FIXTURES / client / "mapping.yaml")
    text = suggest_mapping(read_sample(path), client=client)
    draft = parse_mapping(text, file="draft.yaml")  # passes `mapping check` as it is
    expected, got = _claims(path, golden), _claims(path, draft)
    compared = 0
    for row, claim in expected.items():
        if claim is None:
            continue
        assert got[row] is not None, f"row {row} maps with the golden mapping but not with the draft:\n{text}"
        want, have = _core(claim), _core(got[row])  # type: ignore[arg-type]
        assert have == want, f"row {row}:\n{text}"
        # the reference is the client's reference or invoice number, possibly with or without decoration
        ref = got[row].creditor_reference  # type: ignore[union-attr]
        assert any(ref in r or r in ref for r in (claim.creditor_reference, claim.invoice_number) if r), text
        compared += 1
    assert compared >= 2
