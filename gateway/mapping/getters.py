"""Per-field value getters: one closure per field that reads, transforms, maps, defaults and parses.

``getter`` compiles a field's options once (column positions, text transforms, value map, parser)
into a ``list[str] -> value`` closure; the engine calls it for every row, so the common cases
(one trimmed cell, nothing else) get their own short closures. ``TransformError`` is raised for
a value that cannot be used; the engine turns it into a finding with the row and column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.domain import findings as codes
from gateway.mapping import transforms as t
from gateway.mapping.spec import FieldSpec, FormatSpec, field_date_formats, field_decimal
from gateway.mapping.targets import Kind, Target, canonical_parser, value_parser
from gateway.mapping.text import TextFn, case, chain, named_split, regex_extract, separator_split, zero_pad
from gateway.mapping.transforms import TransformError, value_map
from gateway.mapping.valuemaps import BUILTIN_MAPS

Getter = Callable[[list[str]], Any]


def getter(field: FieldSpec, target: Target, positions: list[int], fmt: FormatSpec, column: str | None) -> Getter:
    """One closure that reads, trims, maps, defaults and parses the field's cell(s)."""
    canonical = canonical_parser(target)
    if field.const is not None:
        constant = canonical(field.const)
        return lambda values: constant
    decimal, thousands = (field_decimal(field, fmt) if target.kind is Kind.AMOUNT
                          else (fmt.decimal_separator, fmt.thousands))
    date_formats = field_date_formats(field, fmt) if target.kind is Kind.DATE else tuple(fmt.date_formats)
    parse = value_parser(target, decimal=decimal, thousands=thousands, date_formats=date_formats)
    if field.implied_decimals is not None:
        parse = t.implied_decimal_parser(field.implied_decimals)
    if field.year_pivot is not None:
        parse = t.date_parser(date_formats, field.year_pivot)
    default = canonical(field.default) if field.default is not None else None
    required = field.required or target.always_required
    lookup = _lookup(field, canonical)
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


def _lookup(field: FieldSpec, canonical: Callable[[str], object]) -> Callable[[str], Any] | None:
    if field.map is None:
        return None
    if isinstance(field.map, str):
        return value_map({k: canonical(v) for k, v in BUILTIN_MAPS[field.map].items()}, ignore_case=True)
    return value_map({k: canonical(v) for k, v in field.map.items()}, ignore_case=field.map_ignore_case)


def _reader(positions: list[int], trim: bool, join: str) -> Callable[[list[str]], str]:
    if len(positions) == 1:
        i = positions[0]
        return (lambda values: values[i].strip()) if trim else (lambda values: values[i])
    if trim:
        return lambda values: join.join(p for p in (values[i].strip() for i in positions) if p)
    return lambda values: join.join(values[i] for i in positions if values[i])
