"""Per-field value getters: one closure per field that reads, transforms, maps, defaults and parses.

``getter`` compiles a field's options once (column positions, text transforms, value map, parser)
into a ``list[str] -> value`` closure; the engine's careful path calls it for every field of a row
that has a problem, and for the fields its generated row function does not read itself.
``field_plan`` describes the same field as data (``CellPlan``, ``ConstPlan``) for that generated
function, built from the very same parts, so both paths compute the same value. ``TransformError``
is raised for a value that cannot be used; the engine turns it into a finding with the row and column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.domain import findings as codes
from gateway.mapping import transforms as t
from gateway.mapping.spec import FieldSpec, FormatSpec, field_date_formats, field_decimal
from gateway.mapping.targets import Kind, Target, canonical_parser, value_parser
from gateway.mapping.text import TextFn, case, chain, named_split, regex_extract, separator_split, zero_pad
from gateway.mapping.transforms import TransformError, parse_cache, value_table
from gateway.mapping.valuemaps import BUILTIN_MAPS

Getter = Callable[[list[str]], Any]




class ConstPlan(NamedTuple):
    """A field with the same value in every row (``const``)."""

    value: Any


class CellPlan(NamedTuple):
    """A field read from one trimmed cell: shape, then value map (or default), then parse."""

    position: int
    shape: TextFn | None               # regex/split/case/zero_pad of a non-empty cell
    parse: Callable[[str], Any]        # of a non-empty cell (after shape), in the file's notation
    cache: dict[str, Any] | None       # the parser's memo of cell -> value (dates, amounts), if it has one
    table: dict[str, Any] | None       # the value map, keys trimmed (and case-folded with ``fold``)
    fold: bool
    map_default: Any                   # for a value not in ``table`` (None: parse it)
    default: Any                       # for an empty cell (None: no default)
    required: bool                     # an empty cell without default is an error


Plan = ConstPlan | CellPlan


def field_plan(field: FieldSpec, target: Target, positions: list[int], fmt: FormatSpec) -> Plan | None:
    """The field as data for the engine's generated row function; None: only its getter reads it."""
    if field.when is not None:
        return None  # the engine wraps the getter in the condition
    canonical = canonical_parser(target)
    if field.const is not None:
        return ConstPlan(canonical(field.const))
    if len(positions) != 1 or not field.trim or field.sum:
        return None
    parse = _parser(field, target, fmt)
    table, fold = _table(field, canonical)
    return CellPlan(positions[0], text_stage(field), parse, parse_cache(parse), table, fold,
                    canonical(field.map_default) if field.map_default is not None else None,
                    canonical(field.default) if field.default is not None else None,
                    field.required or target.always_required)


def _parser(field: FieldSpec, target: Target, fmt: FormatSpec) -> Callable[[str], Any]:
    decimal, thousands = (field_decimal(field, fmt) if target.kind is Kind.AMOUNT
                          else (fmt.decimal_separator, fmt.thousands))
    date_formats = field_date_formats(field, fmt) if target.kind is Kind.DATE else tuple(fmt.date_formats)
    parse = value_parser(target, decimal=decimal, thousands=thousands, date_formats=date_formats)
    if target.name == "interest.rate":
        parse = t.rate_parser(decimal, thousands)  # "5 %" as a spreadsheet shows a percentage, in a CSV
    if field.implied_decimals is not None:
        parse = t.implied_decimal_parser(field.implied_decimals)
    if field.year_pivot is not None:
        parse = t.date_parser(date_formats, field.year_pivot)
    return parse

def getter(field: FieldSpec, target: Target, positions: list[int], fmt: FormatSpec, column: str | None,
           plan: Plan | None = None) -> Getter:
    """One closure that reads, trims, maps, defaults and parses the field's cell(s).

    ``plan`` is the field's ``field_plan`` when the caller has it: the closure then uses its parts
    (the same constant, parser and table objects as the generated row function).
    """
    canonical = canonical_parser(target)
    if field.const is not None:
        constant = plan.value if isinstance(plan, ConstPlan) else canonical(field.const)
        return lambda values: constant
    parse = plan.parse if isinstance(plan, CellPlan) else _parser(field, target, fmt)
    default = canonical(field.default) if field.default is not None else None
    required = field.required or target.always_required
    table, fold = _table(field, canonical)
    lookup = _lookup(table, fold)
    shape = text_stage(field)
    map_default = canonical(field.map_default) if field.map_default is not None else None
    trim = field.trim
    read = _reader(positions, trim, field.join)
    if field.sum:
        return _summed(positions, parse, default, required, column, target.name)

    if lookup is None and default is None and not required and len(positions) == 1 and trim:
        i = positions[0]
        if shape is not None:
            reshape = shape

            def shaped(values: list[str]) -> Any:
                text = values[i].strip()
                if text:
                    text = reshape(text)
                return parse(text) if text else None
            return shaped

        def simple(values: list[str]) -> Any:
            text = values[i].strip()
            return parse(text) if text else None
        return simple

    def full(values: list[str]) -> Any:
        text = read(values)
        if shape is not None and text:
            text = shape(text)
        if not (text.strip() if not trim else text):
            if default is not None:
                return default
            if required:
                raise TransformError(f"'{column}' is empty, but {target.name} is required", codes.MISSING_FIELD)
            return None
        if lookup is not None:
            mapped = lookup(text)
            if mapped is not None:
                return mapped
            if map_default is not None:
                return map_default
        return parse(text)
    return full


def _summed(positions: list[int], parse: Callable[[str], Any], default: Any, required: bool, column: str | None,
            name: str) -> Getter:
    """The sum of the amounts in several cells (fees spread over columns); all empty: default or nothing."""
    def summed(values: list[str]) -> Any:
        amounts = [parse(text) for text in (values[i].strip() for i in positions) if text]
        amounts = [a for a in amounts if a is not None]
        if not amounts:
            if default is not None:
                return default
            if required:
                raise TransformError(f"'{column}' is empty, but {name} is required", codes.MISSING_FIELD)
            return None
        return sum(amounts[1:], amounts[0])
    return summed


def has_transforms(field: FieldSpec) -> bool:
    """Whether the field does more than copy its cell (so the engine's plain-copy shortcut cannot take it)."""
    return (field.regex is not None or field.split is not None or field.case is not None or field.when is not None
            or field.implied_decimals is not None or field.zero_pad is not None or field.sum)


def text_stage(field: FieldSpec) -> TextFn | None:
    """regex, then split, then case: one str -> str function, or None when the field has none."""
    fns: list[TextFn] = []
    if field.regex is not None:
        fns.append(regex_extract(field.regex))
    if isinstance(field.split, str):
        fns.append(named_split(field.split))
    elif field.split is not None:
        fns.append(separator_split(field.split.separator, field.split.index))
    if field.case is not None:
        fns.append(case(field.case))
    if field.zero_pad is not None:
        fns.append(zero_pad(field.zero_pad))
    return chain(fns)


def _table(field: FieldSpec, canonical: Callable[[str], object]) -> tuple[dict[str, Any] | None, bool]:
    """The field's value map with canonical values, keyed the way ``value_table`` keys it."""
    if field.map is None:
        return None, False
    if isinstance(field.map, str):
        return value_table({k: canonical(v) for k, v in BUILTIN_MAPS[field.map].items()}, ignore_case=True), True
    fold = field.map_ignore_case
    return value_table({k: canonical(v) for k, v in field.map.items()}, ignore_case=fold), fold


def _lookup(table: dict[str, Any] | None, fold: bool) -> Callable[[str], Any] | None:
    if table is None:
        return None
    if fold:
        return lambda s: table.get(s.casefold())
    return table.get


def _reader(positions: list[int], trim: bool, join: str) -> Callable[[list[str]], str]:
    if len(positions) == 1:
        i = positions[0]
        return (lambda values: values[i].strip()) if trim else (lambda values: values[i])
    if trim:
        return lambda values: join.join(p for p in (values[i].strip() for i in positions) if p)
    return lambda values: join.join(values[i] for i in positions if values[i])
