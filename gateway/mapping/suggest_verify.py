"""Run a suggested draft over its own sample before it is printed: what does not read is flagged or dropped.

A field whose values fail to parse in most sampled rows (a date column in a notation the draft did not
name, a text column taken for an amount) is dropped and said so in a comment; one failing in some rows is
flagged UNSURE. A draft the loader refuses (which would be a bug in ``suggest``) loses the refused field
rather than reach the integrator broken: every printed draft passes ``mapping check``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.mapping.engine import compile_mapping, date_columns
from gateway.mapping.sample import Sample
from gateway.mapping.spec import parse_mapping
from gateway.readers.base import SourceRow
from gateway.readers.spreadsheet import _EPOCH, MAX_SERIAL

if TYPE_CHECKING:
    from gateway.mapping.suggest import Draft

_REQUIRED = ("creditor_reference", "principal_amount")


def _spec_text(fmt: dict[str, Any], fields: dict[str, dict[str, Any]], client: str) -> str:
    return json.dumps({"version": 1, "client": client, "format": fmt, "fields": fields}, ensure_ascii=False)


def verify(sample: Sample, fmt: dict[str, Any], d: Draft, client: str) -> None:
    """Load the draft and map the sample through it; drop or flag the fields that do not read."""
    for _ in range(len(d.fields) + 1):
        try:
            spec = parse_mapping(_spec_text(fmt, d.fields, client), file="draft")
            break
        except ConfigError as exc:
            target = next((t for t in d.fields if exc.key and exc.key.startswith(f"fields.{t}")), None)
            if target is None or target in _REQUIRED:
                raise
            d.fields.pop(target)
            d.notes.append(f"{target} left out: the draft did not load with it ({exc})")
    else:  # pragma: no cover - the loop always breaks or raises
        return
    if not sample.rows:
        return
    mapper = compile_mapping(spec, sample.header, file="sample", header_row=1)
    failed: Counter[str] = Counter()
    # a spreadsheet reader turns date serials into dates in the columns the mapping reads as dates
    serials = {sample.header.index(c) for c in date_columns(spec) if c in sample.header} \
        if spec.format.type in ("xlsx", "xls", "ods") else set()
    for i, values in enumerate(sample.rows):
        cells = [_serial(v) if j in serials else v for j, v in enumerate(values)]
        row = mapper.map_row(SourceRow(i + 2, cells), client)
        for field in {f.field for f in row.findings if f.field and f.severity.value == "error"}:
            failed[field] += 1
    n = len(sample.rows)
    for target, count in failed.items():
        if target not in d.fields:
            continue
        if count > n / 2 and target not in _REQUIRED:
            column = d.fields.pop(target).get("column")
            d.why.pop(target, None)
            d.unsure.pop(target, None)
            d.notes.append(f"{target} left out: the values of '{column}' did not read in {count} of {n} sampled rows")
        else:
            d.unsure[target] = f"{count} of {n} sampled rows do not read"


def _serial(value: str) -> str:
    if re.fullmatch(r"\d{1,7}", value) and 0 < int(value) <= MAX_SERIAL:
        return (_EPOCH + timedelta(days=int(value))).isoformat()
    return value
