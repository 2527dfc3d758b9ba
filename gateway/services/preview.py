"""Preview a client file through a mapping without storing anything: claims and every finding.

The integrator's loop: read, map (with grouping), validate with the model rules and the mapping's
policy, and flag references repeated inside the file, exactly like ingest, but with no database
and no ack. The rows come back with their canonical claims so a person can check the mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from gateway.config import LimitsConfig
from gateway.domain import findings as codes
from gateway.domain.findings import Finding, Outcome, Severity, outcome_of
from gateway.domain.limitation import STATUTORY, LimitationPolicy
from gateway.domain.model import Claim
from gateway.domain.rules import check_claim
from gateway.mapping.engine import compile_mapping, date_columns
from gateway.mapping.spec import MappingSpec
from gateway.readers.base import SourceRow, open_reader


@dataclass
class PreviewRow:
    row: int
    reference: str | None
    outcome: str
    claim: Claim | None
    findings: list[Finding]
    sheet: str | None = None  # provenance: the worksheet, or the record's XPath
    xpath: str | None = None


@dataclass
class Preview:
    file: str
    header: list[str]
    columns: dict[str, str]  # canonical field -> the client's column
    rows: list[PreviewRow] = field(default_factory=list)
    # A preview reads no store, so it never meets a stored reference: no conflict count.
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome if o is not Outcome.CONFLICT})
    truncated: bool = False  # more rows than ``limit`` were in the file (counts cover all of them)


def preview_file(path: Path, spec: MappingSpec, client_id: str, *, today: date, limit: int | None = None,
                 hold_all: bool = False, limits: LimitsConfig | None = None,
                 limitation: LimitationPolicy = STATUTORY) -> Preview:
    """Map and validate every row of ``path``; keep the first ``limit`` rows in full (read under ``limits``)."""
    with open_reader(path, spec.format, date_columns=date_columns(spec), limits=limits) as reader:
        mapper = compile_mapping(spec, reader.header, file=path.name, header_row=reader.header_row)
        result = Preview(file=str(path), header=list(reader.header), columns=dict(mapper.columns))
        seen: dict[str, int] = {}
        sources: dict[int, SourceRow] = {}  # rows read but not yet answered (a group is read one row ahead)

        def tap(rows: Iterable[SourceRow]) -> Iterator[SourceRow]:
            for src in rows:
                sources[src.row] = src
                yield src

        for mapped in mapper.map_rows(tap(reader), client_id):
            src = sources.get(mapped.row)
            for done in [r for r in sources if r <= mapped.row]:
                del sources[done]
            found = list(mapped.findings)
            claim = mapped.claim
            if claim is not None:
                found.extend(mapper.locate(check_claim(claim, today, limitation), mapped.row, claim))
                ref = claim.creditor_reference
                if ref in seen:
                    found.append(Finding(code=codes.DUPLICATE_REFERENCE, field="creditor_reference", row=mapped.row,
                                         column=mapper.column_for("creditor_reference"),
                                         message=f"reference '{ref}' is also in row {seen[ref]} of this file"))
                else:
                    seen[ref] = mapped.row
                if hold_all or spec.policy.hold_all:
                    found.append(Finding(code="awaiting_release", severity=Severity.HOLD, row=mapped.row,
                                         message="held until the client releases it (collection run)"))
            outcome = outcome_of(found)
            result.counts[outcome.value] += 1
            if limit is None or len(result.rows) < limit:
                result.rows.append(PreviewRow(mapped.row, mapped.reference, outcome.value,
                                              claim if outcome is not Outcome.REJECTED else None, found,
                                              getattr(src, "sheet", None), getattr(src, "xpath", None)))
            else:
                result.truncated = True
    return result
