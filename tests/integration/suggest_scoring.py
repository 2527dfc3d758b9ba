"""Score a mapping on the onboarding corpus: the share of canonical values it reads right from each file.

A file's expected values (``tests/fixtures/onboarding/<file>.expected.json``) list, per record in file order,
canonical field -> value. A mapping is run over the file row by row (mapping only: a value it cannot parse
leaves the row without a claim, and all the row's values count as wrong); per record every field that is
expected or that the mapping filled is compared, so a value read where there is none (a cost centre read as
a fee) counts as wrong too. Model defaults (consumer, EUR, DE) are equal to no value. Rows beyond the
expected records that still make a claim (a sum line read as a claim) count one miss per value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.domain.model import Claim
from gateway.mapping import compile_mapping
from gateway.mapping.engine import date_columns
from gateway.mapping.spec import MappingSpec
from gateway.readers import open_reader

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "onboarding"
FILES = ["shop.csv", "praxis.csv", "gym.xlsx", "verein.xls", "verwaltung.ods", "fibu.xml", "legacy.txt", "kasse.dat",
         "utility.csv", "kanzlei.xlsx", "faelle.xml"]
LAYOUTS = {"legacy.txt": "legacy_satzbeschreibung.txt", "kasse.dat": "kasse_layout.xlsx"}
_DEFAULTS = {"debtor.kind": "consumer", "currency": "EUR", "debtor.country": "DE"}


def canonical(claim: Claim) -> dict[str, str]:
    """The scored canonical values of a claim as text (dates ISO, amounts with two decimals)."""
    d = claim.debtor
    a = d.addresses[0] if d.addresses else None
    fees: dict[str, Decimal] = {}
    for fee in claim.fees:
        fees[fee.kind.value] = fees.get(fee.kind.value, Decimal(0)) + fee.amount
    values: dict[str, Any] = {
        "creditor_reference": claim.creditor_reference, "invoice_number": claim.invoice_number,
        "principal_amount": claim.principal_amount, "currency": claim.currency, "invoice_date": claim.invoice_date,
        "due_date": claim.due_date, "contract_date": claim.contract_date,
        "first_dunning_date": claim.first_dunning_date, "last_dunning_date": claim.last_dunning_date,
        "default_date": claim.default_date,
        **{f"fees.{k}": v for k, v in fees.items()},
        "debtor.kind": d.kind.value, "debtor.salutation": d.salutation.value if d.salutation else None,
        "debtor.first_name": d.first_name, "debtor.last_name": d.last_name, "debtor.company": d.company,
        "debtor.birth_date": d.birth_date, "debtor.customer_number": d.customer_number,
        "debtor.street": a and a.street, "debtor.house_number": a and a.house_number,
        "debtor.postal_code": a and a.postal_code, "debtor.city": a and a.city, "debtor.country": a and a.country,
        "debtor.email": d.emails[0] if d.emails else None, "debtor.phone": d.phones[0] if d.phones else None,
        "debtor.iban": d.bank_accounts[0].iban if d.bank_accounts else None}
    out = {}
    for k, v in values.items():
        if v is None or v == "":
            continue
        text = f"{v:.2f}" if isinstance(v, Decimal) else v.isoformat() if hasattr(v, "isoformat") else str(v)
        if _DEFAULTS.get(k) != text:
            out[k] = text
    return out


@dataclass
class Score:
    file: str
    format: str
    right: int = 0
    total: int = 0
    wrong_fields: set[str] = field(default_factory=set)

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0


def expected_values(name: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads((CORPUS / f"{name}.expected.json").read_text(encoding="utf-8"))
    return [{k: v for k, v in r.items() if _DEFAULTS.get(k) != v} for r in rows]


def mapped_values(path: Path, spec: MappingSpec) -> list[dict[str, str] | None]:
    """Per data row of ``path``, its canonical values through ``spec`` (None: no claim)."""
    with open_reader(path, spec.format, date_columns=date_columns(spec)) as reader:
        mapper = compile_mapping(spec, reader.header, file=path.name, header_row=reader.header_row)
        out: list[dict[str, str] | None] = []
        for src in reader:
            claim = mapper.map_row(src, "x").claim
            out.append(canonical(claim) if claim is not None else None)
        return out


def score(name: str, spec: MappingSpec) -> Score:
    """Compare ``spec``'s reading of corpus file ``name`` with its expected values."""
    want = expected_values(name)
    try:
        got = mapped_values(CORPUS / name, spec)
    except Exception:  # a draft that cannot even read the file scores nothing
        got = []
    s = Score(name, spec.format.type if isinstance(spec.format.type, str) else name.rsplit(".", 1)[1])
    for i, exp in enumerate(want):
        have = got[i] if i < len(got) else None
        keys = set(exp) | set(have or {})
        for k in keys:
            s.total += 1
            if have is not None and have.get(k) == exp.get(k):
                s.right += 1
            else:
                s.wrong_fields.add(k)
    for extra in got[len(want):]:
        if extra:
            s.total += len(extra)
            s.wrong_fields.add("<extra rows>")
    return s
