"""The JSON Schema of a mapping file, generated from the msgspec structs so the two cannot drift.

``python -m gateway.mapping.schema > schemas/mapping.schema.json`` writes it; a test fails when the
committed file differs from what the structs generate. The generated schema is patched where the
loader is richer than the types: canonical field names, the ``target: Column`` shorthand, built-in
split and map names, and values the loader keeps as text (``equals: 01`` is the text "01").
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from gateway.mapping.spec import MappingSpec
from gateway.mapping.targets import TARGETS
from gateway.mapping.text import SPLITS
from gateway.mapping.valuemaps import BUILTIN_MAPS

_TEXT_DEFS = ("FieldSpec", "Condition", "SplitSpec", "GroupSpec", "PartnerRule")
_ANY_SCALAR = {"type": ["string", "number", "boolean"]}
FIELD_DOCS = {
    "column": "the client's column (header name; for XML and fixed width a name from format.columns)",
    "columns": "several columns joined with `join` (empty parts skipped)",
    "join": "separator for `columns` (default one space)",
    "sum": "amounts: add up the amounts of `columns` (fees spread over several columns); empty cells skipped",
    "const": "a fixed canonical value for every row (amounts 12.50, dates 2025-01-31, enum values)",
    "default": "canonical value when the cell is empty (after the transforms)",
    "map": "client value -> canonical value, or a built-in map: " + ", ".join(BUILTIN_MAPS),
    "map_default": "canonical value for a value not in `map`",
    "map_ignore_case": "match `map` keys case-insensitively",
    "trim": "strip surrounding spaces (default true)",
    "format": "dates: strftime format(s) for this field; amounts: notation by example, e.g. 1.234,56",
    "required": "an empty cell rejects the row",
    "regex": "keep the first group (or the whole match) of this pattern; no match is empty",
    "split": "one part of a composite value: " + ", ".join(SPLITS) + "; or {separator, index}",
    "case": "upper, lower or title case",
    "zero_pad": "digits-only values padded with leading zeros to this width (PLZ 1067 -> 01067)",
    "implied_decimals": "amounts written in minor units: 2 reads 1250 as 12.50",
    "year_pivot": "two-digit years below it are 20xx, the others 19xx (default 69)",
    "when": "use this field only for rows where the condition holds",
    "else": "the field's source for rows where `when` does not hold",
}


def _texty(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "string" and len(node) <= 2 and "enum" not in node:
            return {**_ANY_SCALAR, **{k: v for k, v in node.items() if k != "type"}}
        return {k: _texty(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_texty(v) for v in node]
    return node


def mapping_json_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict."""
    schema: dict[str, Any] = msgspec.json.schema(MappingSpec)
    defs = schema["$defs"]
    for name in _TEXT_DEFS:
        defs[name] = _texty(defs[name])
    root = defs["MappingSpec"]
    root["description"] = "A client mapping: mappings/<client>.yaml. Reference: docs/mapping.md"
    root["properties"]["client"] = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
    root["properties"]["version"] = {"const": 1, "default": 1}
    root["properties"]["fields"] = {
        "type": "object", "minProperties": 1, "propertyNames": {"enum": sorted(TARGETS)},
        "additionalProperties": {"anyOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/FieldSpec"}]},
    }
    fmt = defs["FormatSpec"]["properties"]
    del fmt["alternatives"]  # filled by the loader from a list in `type`
    kinds = fmt["type"]["enum"]
    fmt["type"] = {"anyOf": [{"enum": kinds}, {"type": "array", "items": {"enum": kinds}, "minItems": 1,
                                                "uniqueItems": True}],
                   "default": "csv", "description": "the file format, or a list of the formats of one export "
                   "(csv, xlsx, xls, ods), e.g. [xls, xlsx]: the reader takes the one the file is"}
    props = defs["FieldSpec"]["properties"]
    props["split"] = {"anyOf": [{"enum": list(SPLITS)}, {"$ref": "#/$defs/SplitSpec"}, {"type": "null"}]}
    props["map"] = {"anyOf": [{"type": "object", "additionalProperties": _ANY_SCALAR}, {"enum": sorted(BUILTIN_MAPS)},
                              {"type": "null"}]}
    for key, text in FIELD_DOCS.items():
        props[key]["description"] = text
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "urn:inkasso-gateway:mapping:1", "title": "Client mapping", **schema}


def main() -> None:
    sys.stdout.write(json.dumps(mapping_json_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
