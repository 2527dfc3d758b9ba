"""The mapping engine: a mapping compiled against a file's header turns rows into claims.

``compile_mapping`` resolves every field once (column index, parser, value map, default) into a
small closure, so the careful path does no configuration lookups per row, and writes the whole
mapping into one generated function (``rowcode``) that maps a row without any problem with no
call or dict per field; a row with a problem goes to the careful path, which alone writes findings.
A row yields a ``Claim`` or, if any value is unusable, the findings that say which column and why.
Business rules are not run here: the ingest service runs them on the claim and calls
``RowMapper.locate`` to point their findings at the client's columns.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from itertools import repeat
from typing import Any, NamedTuple

import msgspec

from gateway.domain import findings as codes
from gateway.domain.findings import Finding, Severity
from gateway.domain.model import (Address, AddressKind, BankAccount, Claim, Debtor, DebtorKind, Fee,
                                  Interest, Payment, Salutation)
from gateway.errors import InputError
from gateway.mapping.conditions import AWAITING_RELEASE, CompiledPolicy, compile_condition, compile_policy
from gateway.mapping.getters import Getter, Plan, field_plan, getter, has_transforms
from gateway.mapping.grouping import group_rows
from gateway.mapping.rowcode import (ADDRESS, BANK, CLAIM, DEBTOR, FEE_DUNNING, FEE_GROUPS, INTEREST, PAYMENT, Field,
                                     generate)
from gateway.mapping.spec import FieldSpec, FormatSpec, MappingSpec
from gateway.mapping.targets import ADDRESS_FIELDS, FEE_KINDS, TARGETS, Kind, Target
from gateway.mapping.text import NOT_XML, composed
from gateway.mapping.transforms import TransformError
from gateway.readers.base import SourceRow

_Getter = Getter
# A cell that is a number, an amount, a date or an IBAN-like code: what column names never are.
_DATA_LIKE = re.compile(r"^(?:[+-]?[\d.,' ]*\d[\d.,' ]*(?:[a-zA-Z€$]{0,3})|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|"
                        r"[A-Z]{2}\d{2}[A-Z0-9 ]{10,30})$")
__all__ = ["MappedRow", "RowMapper", "compile_mapping", "date_columns"]
# The error values a spreadsheet cell can show (Excel's; LibreOffice writes the same into XLSX): named in a finding
# as they are; anything else a file puts in an error cell is not quoted.
_ERROR_VALUES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
                           "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"})
# The label of a list's totals row, at the start of a cell.
_TOTALS = re.compile(r"\s*(Gesamtsumme|Zwischensumme|Endsumme|Summen|Summe|Gesamtbetrag|Gesamt|Insgesamt|Total|Totals"
                     r"|Sum)\b", re.IGNORECASE)
# A German postcode that lost its leading zero: four digits, the first not 0 (none starts 00).
_LOST_ZERO = re.compile(r"[1-9][0-9]{3}")
_DEFAULT_COUNTRY = Address().country
# Kinds whose text reaches a partner as written (amounts, dates, IBANs, enums and flags are parsed first).
_FREE_TEXT = frozenset({Kind.TEXT, Kind.TEXT_LIST, Kind.CODE, Kind.LABELS})

# Where a target's value goes while a row is assembled: one dict of keyword arguments per struct (the
# groups CLAIM ... FEE_OTHER are rowcode's, which builds the same structs from local variables).
_FEE_GROUPS = FEE_GROUPS
_DEBTOR_SPECIAL = {"phone": (DEBTOR, "phones"), "email": (DEBTOR, "emails"), "iban": (BANK, "iban"),
                   "bic": (BANK, "bic"), "account_holder": (BANK, "holder")}


def _destination(target: str) -> tuple[int, str]:
    group, _, attr = target.partition(".")
    if not attr:
        return CLAIM, group
    if group == "debtor":
        return _DEBTOR_SPECIAL.get(attr) or ((ADDRESS if attr in ADDRESS_FIELDS else DEBTOR), attr)
    if group == "fees":
        kind = attr.removesuffix("_date")
        return FEE_DUNNING + FEE_KINDS.index(kind), "date" if kind != attr else "amount"
    return (INTEREST if group == "interest" else PAYMENT), attr


# Canonical paths used by domain rules -> the target names that fed them (first one mapped wins).
_INDEX = re.compile(r"\[\d+\]")
_FEE_PATH = re.compile(r"^fees\[(\d+)\]\.(amount|date)$")
_RULE_PATHS: dict[str, tuple[str, ...]] = {
    **{f"debtor.addresses.{a}": (f"debtor.{a}",) for a in ADDRESS_FIELDS},
    "debtor.addresses": ("debtor.street", "debtor.postal_code", "debtor.city", "debtor.email"),
    "debtor.bank_accounts.iban": ("debtor.iban",), "debtor.bank_accounts.bic": ("debtor.bic",),
    "debtor.bank_accounts.holder": ("debtor.account_holder",), "debtor.bank_accounts": ("debtor.iban",),
    "debtor.emails": ("debtor.email",), "debtor.phones": ("debtor.phone",),
    "payments_received.amount": ("payments.amount",), "payments_received.date": ("payments.date",),
    "payments_received.reference": ("payments.reference",),
    "total_open_amount": ("principal_amount",), "fees": tuple(f"fees.{k}" for k in FEE_KINDS),
}


class MappedRow(msgspec.Struct, kw_only=True, gc=False):  # no cycles: keep it out of the GC's work
    """The result for one source row; ``claim`` is None when any finding is an error."""

    row: int
    reference: str | None  # the client's reference as written, also for rejected rows (for the ack)
    claim: Claim | None
    findings: list[Finding]


class _Step(NamedTuple):
    target: str
    group: int
    attr: str
    get: _Getter
    column: str | None
    position: int | None = None  # set for plain text fields: a trimmed copy of one cell, empty -> None
    plan: Plan | None = None  # the field as data for the generated row function


class RowMapper:
    """A mapping bound to one file's header; ``map_row`` is the per-row hot path.

    ``map_row(src, client_id)`` maps one source row to a claim, or to the findings that explain why
    not. It is the mapping's generated function (``rowcode``), which hands any row with a problem
    to ``map_row_careful``; both give the same result for every row.
    """

    map_row: Callable[[SourceRow, str], MappedRow]

    def __init__(self, spec: MappingSpec, header: list[str], steps: list[_Step], columns: dict[str, str],
                 policy: CompiledPolicy | None = None, text_cells: list[tuple[int, str]] | None = None,
                 read_cells: list[tuple[int, str]] | None = None, postcode_at: int | None = None,
                 rate_at: int | None = None) -> None:
        self.spec, self.header, self.columns = spec, header, columns
        # (position, target) of every cell a free-text field reads: screened for what XML cannot carry
        self._text_cells = text_cells or []
        # (position, target) of every cell any field reads: a formula there without a saved value is named
        self._read_cells = read_cells or []
        self.policy = policy or CompiledPolicy()
        # Plain text fields (the majority) are copied in one tight loop without a call per cell.
        self._text = [(s.position, s.group, s.attr) for s in steps if s.position is not None]
        self._steps = [(s.target, s.group, s.attr, s.get, s.column) for s in steps if s.position is None]
        self._width = len(header)
        self._partner = spec.policy.partner
        self._fee_groups = [(g, kind) for g, kind in _FEE_GROUPS if any(s.group == g for s in steps)]
        self._ref_step = next(s for s in steps if s.target == "creditor_reference")
        self._columns_of: dict[str, str | None] = {}  # rule path -> column, for paths that need no claim
        # the one cell debtor.postal_code reads (no 'when'): a number there may have lost its leading zero
        self._postcode_at = postcode_at
        # the one cell interest.rate reads (no 'when'): shown as a percentage, it holds a hundredth of the rate
        self._rate_at = rate_at
        fast = generate([Field(s.group, s.attr, s.get, s.plan) for s in steps], self._width, self.policy,
                        self._partner, self.map_row_careful, MappedRow)
        self.row_source = fast[1] if fast else None  # the generated function's text (for a person reading it)
        self.map_row = fast[0] if fast else self.map_row_careful

    def column_for(self, field: str | None, claim: Claim | None = None) -> str | None:
        """The client's column that fed a canonical field or rule path (``debtor.addresses[0].city``)."""
        if not field:
            return None
        if field in self.columns:
            return self.columns[field]
        if field in self._columns_of:
            return self._columns_of[field]
        m = _FEE_PATH.match(field)
        if m is not None and claim is not None and int(m.group(1)) < len(claim.fees):
            kind = claim.fees[int(m.group(1))].kind.value
            return self.columns.get(f"fees.{kind}" if m.group(2) == "amount" else f"fees.{kind}_date")
        base = _INDEX.sub("", field)
        if m is not None:
            suffix = "" if m.group(2) == "amount" else "_date"
            candidates: tuple[str, ...] = tuple(f"fees.{k}{suffix}" for k in FEE_KINDS)
        else:
            candidates = _RULE_PATHS.get(base, (base,))
        column = next((self.columns[c] for c in candidates if c in self.columns), None)
        if m is None and len(self._columns_of) < 1024:  # fee paths depend on the claim; rule paths are few
            self._columns_of[field] = column
        return column

    def locate(self, findings: list[Finding], row: int, claim: Claim | None = None) -> list[Finding]:
        """Findings (e.g. from ``rules.validate_claim``) with the row and the client's column filled in."""
        return [f if f.row is not None and f.column is not None
                else f.located(row=row, column=f.column or self.column_for(f.field, claim)) for f in findings]

    def map_rows(self, rows: Iterable[SourceRow], client_id: str) -> Iterator[MappedRow]:
        """Every row mapped; with ``group`` in the mapping, consecutive rows of one key merged."""
        if self.spec.group is None:
            return map(self.map_row, rows, repeat(client_id))
        key = [self._index(c) for c in self.spec.group.columns]
        map_row = self.map_row
        return group_rows(self.spec.group.mode, ((src, map_row(src, client_id)) for src in rows), key,
                          "+".join(self.spec.group.columns))

    def _index(self, column: str) -> int:
        return _HeaderIndex(self.header, "", 1).find(column, "group.by")

    def map_row_careful(self, src: SourceRow, client_id: str) -> MappedRow:
        """One source row to a claim, or to the findings that explain why not, field by field."""
        values = composed(src.values)
        if len(values) != self._width:
            fitted = self._fit(values, src.sheet is not None)
            if fitted is None:
                return self._wrong_width(src)
            values = fitted
        groups: tuple[dict[str, Any], ...] = ({}, {}, {}, {}, {}, {}, {}, {}, {})
        findings: list[Finding] = []
        for i, group, attr in self._text:
            text = values[i].strip()
            if text:
                groups[group][attr] = text
        for target, group, attr, get, column in self._steps:
            try:
                value = get(values)
            except TransformError as exc:
                findings.append(Finding(code=exc.code, message=exc.message, field=target, row=src.row, column=column,
                                        client_message=exc.client_message))
                continue
            if value is not None:
                groups[group][attr] = value
        # A character XML cannot carry in a text cell a field reads is the row's error, named by column, instead
        # of a claim acked as accepted that fails at every delivery.
        for i, target in self._text_cells:
            bad = NOT_XML.search(values[i])
            if bad is not None:
                findings.append(Finding(
                    code=codes.INVALID_VALUE, field=target, row=src.row, column=self.header[i],
                    message=f"holds the control character U+{ord(bad.group()):04X}, which no partner's XML can "
                            "carry; remove it from the cell (line breaks and tabs are fine)"))
        if src.unsaved or src.errors:
            self._unusable_cells(src, findings)
        if "creditor_reference" not in groups[CLAIM] and findings:
            self._totals_hint(values, findings)
        if src.hidden:
            # A row out of sight when the client saved (a filter on the open invoices, a paid one hidden by hand):
            # handing it over could send a paid invoice to collection, dropping it could lose a claim.
            findings.append(Finding(
                code=AWAITING_RELEASE, severity=Severity.HOLD, row=src.row,
                message="the row is hidden in the sheet (filtered out or hidden by hand): held until the client "
                        "releases it; if it was hidden because it is not to be collected, leave it out of the file"))
        reference = groups[CLAIM].get("creditor_reference")
        if self.policy.active:
            self.policy.apply(values, groups[CLAIM], findings, src.row)
        if src.percent and self._rate_at in src.percent and isinstance(groups[INTEREST].get("rate"), Decimal):
            # interest.rate is percent per year; the cell shows 5 % and holds 0.05
            groups[INTEREST]["rate"] = (groups[INTEREST]["rate"] * 100).normalize() + 0
        number_postcode = bool(src.whole4) and self._postcode_at in (src.whole4 or ())
        claim = self._assemble(groups, client_id, findings, src.row, number_postcode)
        return MappedRow(row=src.row, reference=reference, claim=claim, findings=findings)

    def _totals_hint(self, values: list[str], findings: list[Finding]) -> None:
        """A row without a reference whose cell starts with 'Summe', 'Gesamt', 'Total' ... is the list's totals row
        (hand-kept lists end with one): its finding says so, and how the mapping leaves it out."""
        at = next((i for i, f in enumerate(findings)
                   if f.code == codes.MISSING_FIELD and f.field == "creditor_reference"), None)
        if at is None:
            return
        for i, cell in enumerate(values):
            m = _TOTALS.match(cell) if cell else None
            if m is not None and i < len(self.header):
                column = self.header[i]  # the cell is not quoted: 'Total' may begin a company's name
                hint = (f" (it looks like a totals row: column {column} starts with a word like 'Summe' or "
                        f"'Gesamt'; format.skip_rows_where: {{{column}: '(?i)(summe|gesamt|total).*'}} leaves "
                        "such rows out)")
                f = findings[at]
                findings[at] = msgspec.structs.replace(f, message=f.message + hint,
                                                       client_message=(f.client_message or f.message) + hint)
                return

    def _unusable_cells(self, src: SourceRow, findings: list[Finding]) -> None:
        """A field reading a cell whose formula has no saved value (a workbook no spreadsheet program calculated),
        or a cell showing an error value (``#N/A``), gets that said, not "is empty" or nothing: the value the
        client meant is not in the file."""
        unsaved, errors = set(src.unsaved or ()), src.errors or {}
        hit: dict[str, int] = {}
        for i, target in self._read_cells:
            if i in unsaved or i in errors:
                hit.setdefault(target, i)
        if not hit:
            return
        findings[:] = [f for f in findings if f.field not in hit]
        for target, i in hit.items():
            if i in unsaved:
                findings.append(Finding(
                    code=codes.MISSING_FIELD, field=target, row=src.row, column=self.header[i],
                    message="the cell holds a formula without a saved value (the program that wrote the file does "
                            "not calculate formulas); open the file in the spreadsheet program and save it, or "
                            "export the values, and send it again"))
                continue
            shown = errors[i] if errors[i] in _ERROR_VALUES else "an error value"
            why = " (a lookup such as VLOOKUP/SVERWEIS found nothing)" if shown == "#N/A" else ""
            findings.append(Finding(
                code=codes.INVALID_VALUE, field=target, row=src.row, column=self.header[i],
                message=f"the cell shows {shown}{why}: its formula failed, so the file holds no value there; "
                        "correct it in the spreadsheet and send the file again"))

    def _assemble(self, groups: tuple[dict[str, Any], ...], client_id: str, findings: list[Finding],
                  row: int, number_postcode: bool = False) -> Claim | None:
        claim_kw, debtor_kw, address, bank, interest, payment = groups[:6]
        if "kind" not in debtor_kw and (debtor_kw.get("salutation") is Salutation.COMPANY
                                        or (debtor_kw.get("company") and not debtor_kw.get("last_name"))):
            debtor_kw["kind"] = DebtorKind.BUSINESS
        if len(address) > ("country" in address):  # a default country alone is no address
            if number_postcode:
                self._lost_zero(address, findings, row)
            if debtor_kw.get("kind") is DebtorKind.BUSINESS:
                address.setdefault("kind", AddressKind.BUSINESS)
            debtor_kw["addresses"] = [Address(**address)]
        if bank:
            if "iban" in bank:
                debtor_kw["bank_accounts"] = [BankAccount(**bank)]
            else:
                findings.append(self._finding(codes.MISSING_FIELD, "debtor.iban", row, Severity.WARNING,
                                              "bank details without an IBAN are not passed on"))
        if self._fee_groups:
            fees = [Fee(kind=kind, **groups[g]) for g, kind in self._fee_groups if groups[g].get("amount")]
            if fees:
                claim_kw["fees"] = fees  # a fee of 0 (or a fee date without an amount) means no fee
        if interest:
            if self._complete(interest, ("kind", "from_date"), "interest", row, findings):
                claim_kw["interest"] = Interest(**interest)
        if payment.get("amount") or payment.get("date"):
            if self._complete(payment, ("amount", "date"), "payments", row, findings) and payment["amount"]:
                claim_kw["payments_received"] = [Payment(**payment)]
        if self._partner and "partner_id" not in claim_kw:
            claim_kw["partner_id"] = self._partner
        if findings and any(f.severity is Severity.ERROR for f in findings):
            return None
        return Claim(client_id=client_id, debtor=Debtor(**debtor_kw), **claim_kw)

    def _lost_zero(self, address: dict[str, Any], findings: list[Finding], row: int) -> None:
        """A German postcode read from a spreadsheet's number cell of four digits is one whose leading zero the
        spreadsheet dropped (01067 typed into a General cell is stored as the number 1067): every German postcode
        has five digits, none starts 00, and a number cannot keep a leading zero. The zero is put back, and a
        warning says so. Text of four digits (a CSV, an XML export, a text cell) stays as written: it may be a
        lost zero or a mistyped code (``2610`` for Uelzen's 29525), which the rules then reject; a client whose
        exports lose the zero maps the column with ``zero_pad: 5``."""
        code = address.get("postal_code")
        if (code is None or len(code) != 4 or not _LOST_ZERO.fullmatch(code)
                or address.get("country", _DEFAULT_COUNTRY) != "DE"):
            return
        address["postal_code"] = "0" + code
        message = ("a German postal code has 5 digits: this one has 4, taken as one whose leading zero was lost (a "
                   "spreadsheet stored it as a number) and a 0 put in front; if the address is not in Germany, "
                   "give its country")
        findings.append(Finding(
            code=codes.INVALID_VALUE, field="debtor.postal_code", severity=Severity.WARNING, row=row,
            column=self.columns.get("debtor.postal_code"), message=message,
            client_message=f"German postal code '{code}' has 4 digits: taken as '0{code}' (the leading zero was lost "
                           "when a spreadsheet stored it as a number); if the address is not in Germany, give its "
                           "country"))

    def _complete(self, kw: dict[str, Any], needed: tuple[str, ...], prefix: str, row: int,
                  findings: list[Finding]) -> bool:
        missing = [n for n in needed if n not in kw]
        for name in missing:
            given = ", ".join(f"{prefix}.{k}" for k in kw)
            findings.append(self._finding(codes.MISSING_FIELD, f"{prefix}.{name}", row, Severity.ERROR,
                                          f"{prefix}.{name} is empty but {given} is given"))
        return not missing

    def _finding(self, code: str, field: str, row: int, severity: Severity, message: str) -> Finding:
        return Finding(code=code, message=message, field=field, severity=severity, row=row,
                       column=self.columns.get(field))

    def _fit(self, values: list[str], sheet: bool = False) -> list[str] | None:
        # Trailing empty fields beyond the header (a trailing delimiter) are harmless. In a spreadsheet (a row with
        # its sheet) so are cells right of the header, a note beside the table: cells keep their columns, and a
        # column without a name is one no field reads. In CSV an extra field may mean shifted values.
        if len(values) > self._width and (sheet or not any(v.strip() for v in values[self._width:])):
            return values[:self._width]
        return None

    def _wrong_width(self, src: SourceRow) -> MappedRow:
        padded = src.values + [""] * max(0, self._width - len(src.values))
        try:
            reference = self._ref_step.get(padded) or None
        except TransformError:
            reference = None
        message = (f"the row has {len(src.values)} fields, the header has {self._width} "
                   "(a missing or extra delimiter, or an unquoted delimiter inside a value?)")
        finding = Finding(code=codes.COLUMN_COUNT, message=message, row=src.row)
        return MappedRow(row=src.row, reference=reference, claim=None, findings=[finding])


def compile_mapping(spec: MappingSpec, header: list[str], *, file: str, header_row: int | None = None) -> RowMapper:
    """Bind ``spec`` to a file's header; InputError if a mapped column is not in the header."""
    fmt = spec.format
    sheets = fmt.sheet is None and bool({fmt.type, *fmt.alternatives} & {"xlsx", "xls", "ods"})
    index = _HeaderIndex(header, file, header_row or fmt.header_row, other_sheets=sheets)
    steps: list[_Step] = []
    columns: dict[str, str] = {}
    text_cells: set[tuple[int, str]] = set()
    read_cells: set[tuple[int, str]] = set()
    for name, field in spec.fields.items():
        target = TARGETS[name]
        positions = [index.find(c, name) for c in field.source_columns]
        column = "+".join(header[i] for i in positions) or None
        if column:
            columns[name] = column
        group, attr = _destination(name)
        plain = (target.kind is Kind.TEXT and len(positions) == 1 and field.trim and not field.required
                 and not target.always_required and field.map is None and field.default is None
                 and not has_transforms(field))
        plan = field_plan(field, target, positions, spec.format)
        get = getter(field, target, positions, spec.format, column, plan)
        if field.when is not None:
            get = _conditional(get, field, target, index, spec.format, name)
        steps.append(_Step(name, group, attr, get, column, positions[0] if plain else None, plan))
        read = _read_positions(field, index, name)
        read_cells.update((i, name) for i in read)
        if target.kind in _FREE_TEXT:
            text_cells.update((i, name) for i in read)
    return RowMapper(spec, list(header), steps, columns, policy=compile_policy(spec, index),
                     text_cells=sorted(text_cells), read_cells=sorted(read_cells),
                     postcode_at=_one_cell(spec, index, "debtor.postal_code"),
                     rate_at=_one_cell(spec, index, "interest.rate"))


def _one_cell(spec: MappingSpec, index: _HeaderIndex, name: str) -> int | None:
    """The position of the one cell a field reads, if it reads one always (no 'when', no 'const')."""
    field = spec.fields.get(name)
    if field is None or field.when is not None or len(field.source_columns) != 1:
        return None
    return index.find(field.source_columns[0], name)


def _read_positions(field: FieldSpec, index: _HeaderIndex, name: str) -> list[int]:
    """The header positions whose text a field (or any of its ``else`` branches) may take as its value."""
    positions: list[int] = []
    branch: FieldSpec | None = field
    while branch is not None:
        positions += [index.find(c, name) for c in branch.source_columns]
        branch = branch.else_
    return positions


def _conditional(get: _Getter, field: FieldSpec, target: Target, index: _HeaderIndex, fmt: FormatSpec,
                 name: str) -> _Getter:
    assert field.when is not None
    holds = compile_condition(field.when, index.find, f"{name}.when")
    other: _Getter | None = None
    if field.else_ is not None:
        branch = field.else_
        positions = [index.find(c, f"{name}.else") for c in branch.source_columns]
        column = "+".join(index.header[i] for i in positions) or None
        other = getter(branch, target, positions, fmt, column)
        if branch.when is not None:
            other = _conditional(other, branch, target, index, fmt, name)
    if other is None and (target.always_required or field.required):
        why = f"{name} is required, but no 'when' of the mapping holds for this row (and there is no 'else')"

        def missing(values: list[str]) -> Any:
            raise TransformError(why, codes.MISSING_FIELD)
        other = missing
    if other is None:
        return lambda values: get(values) if holds(values) else None
    otherwise = other
    return lambda values: get(values) if holds(values) else otherwise(values)


def _bare(name: str) -> str:
    """A column name as a person reads it: without surrounding spaces and invisible marks. A byte order mark
    carried into a cell (a CSV with two, a spreadsheet built from a CSV read without ``utf-8-sig``) or a
    zero-width space looks like nothing, so a message saying that 'Rechnungsnr' is missing would be a riddle."""
    return unicodedata.normalize("NFC", name.strip().strip("\ufeff\u200b\u2060").strip())


class _HeaderIndex:
    def __init__(self, header: list[str], file: str, header_row: int, other_sheets: bool = False) -> None:
        self.header, self.file, self.header_row = header, file, header_row
        # a workbook read without a sheet named: the data may be on another sheet than the first visible one
        self.where = ("is the header row missing, not in the row the mapping names, or on another sheet than the "
                      "first visible one (format.sheet names it)?" if other_sheets else
                      "is the header row missing, or not in the row the mapping names?")
        self.exact: dict[str, list[int]] = {}
        self.folded: dict[str, list[int]] = {}
        for i, name in enumerate(header):
            self.exact.setdefault(_bare(name), []).append(i)
            self.folded.setdefault(_bare(name).casefold(), []).append(i)

    def find(self, column: str, target: str) -> int:
        found = self.exact.get(_bare(column)) or self.folded.get(_bare(column).casefold())
        if not found:
            near = difflib.get_close_matches(column, self.header, n=1, cutoff=0.6)
            hint = f"did you mean '{near[0]}'? " if near else ""
            # The "header" may be a data row (a file without one): its cells are debtor data, which no ack,
            # log or error column may quote, so say what the row looks like instead of what it holds.
            data = sum(1 for cell in self.header if _DATA_LIKE.match(cell.strip()))
            shape = f"the header row has {len(self.header)} cells"
            if data:
                shape += f", {data} of them numbers, amounts or dates, as in a data row"
                detail = None  # nothing of a data row is quoted, not even as a near match
            else:  # a real header: the client's own column names, named back to it in its ack only
                detail = f"{hint}the header is: {'; '.join(self.header)[:2000]}"
            raise InputError(f"the mapping reads column '{column}' for {target}, but the header has no such "
                             f"column ({self.where}); {shape}",
                             file=self.file, row=self.header_row, column=column, detail=detail)
        if len(found) > 1:
            raise InputError(f"column '{column}' (for {target}) appears {len(found)} times in the header",
                             file=self.file, row=self.header_row, column=column)
        return found[0]


def date_columns(spec: MappingSpec) -> frozenset[str]:
    """The client columns the mapping reads as dates (spreadsheet readers turn serials in them into dates)."""
    names: set[str] = set()
    for name, field in spec.fields.items():
        if TARGETS[name].kind is not Kind.DATE:
            continue
        branch: FieldSpec | None = field
        while branch is not None:
            names.update(branch.source_columns)
            branch = branch.else_
    return frozenset(names)
