"""A client's mapping file (``mappings/<client>.yaml``) loaded into typed structs.

The file is composed into a YAML node tree first so every error can name the file, the line,
the key and what was expected. Values a client's data is compared with or that become data
(column names, ``const``, ``default``, ``map`` keys and values, formats) are taken as the text
written, never as YAML 1.1 booleans or numbers: ``NO`` (Norway) stays ``"NO"``, ``01`` stays ``"01"``.
``const``, ``default`` and ``map`` values are canonical: amounts ``12.50``, dates ``2025-01-31``,
enum values as in the model (``mr``, ``company``).
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import yaml

from gateway.errors import ConfigError
from gateway.mapping import transforms as t
from gateway.mapping.checks import check_policy, check_transforms
from gateway.mapping.targets import TARGETS, Kind, canonical_parser, closest_targets

FormatType = Literal["csv", "xlsx", "xls", "ods", "xml", "fixed_width"]
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "cp1252": "cp1252", "iso8859-1": "iso8859-1"}
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}


class _Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class FixedColumn(_Spec, kw_only=True, frozen=True):
    """One field of a fixed-width record: 1-based ``start``, ``length`` characters, implied decimals."""

    start: int
    length: int
    decimals: int = 0  # "0001234" with decimals 2 is 12.34 (amounts written in cents)


class FormatSpec(_Spec, kw_only=True, frozen=True):
    """How the file is written: type, text encoding, CSV dialect, header row, number and date notation."""

    type: FormatType = "csv"  # written as a list (``[xls, xlsx]``): the first here, all in ``alternatives``
    # Several formats of one export: the reader takes the one the file's bytes show (set by the loader
    # from a ``type`` list, never written in a mapping).
    alternatives: list[FormatType] = msgspec.field(default_factory=list)
    encoding: str = "utf-8"  # utf-8 (a BOM is stripped), windows-1252, iso-8859-1, or auto (detected)
    delimiter: str = ";"     # one of ; , tab | (any one character), or auto (sniffed from the header line)
    quotechar: str = '"'
    header_row: int = 1  # physical line (sheet row) of the header, 1-based; 0: no header, see ``columns``
    sheet: str | int | None = None  # spreadsheets: sheet name, or its position from 1; default the first
    # header_row 0: the column names in file order; xml: name -> XPath relative to the record;
    # fixed_width: name -> {start, length, decimals}
    columns: list[str] | dict[str, str | FixedColumn] | None = None
    record_path: str | None = None  # xml: absolute path of the record elements, e.g. /Export/Forderung
    namespaces: dict[str, str] = msgspec.field(default_factory=dict)  # xml: prefix -> namespace URI
    skip_rows_where: dict[str, str] | None = None  # column -> regex: rows whose cell matches are ignored
    footer_rows: int = 0  # trailing data rows to ignore (a sum line)
    decimal_separator: Literal[",", "."] = ","
    thousands_separator: str | None = None  # None: the other of "." and ","; "" for none
    date_formats: list[str] = msgspec.field(default_factory=lambda: list(t.DEFAULT_DATE_FORMATS))

    @property
    def thousands(self) -> str:
        """The thousands separator in effect ("" for none)."""
        if self.thousands_separator is not None:
            return self.thousands_separator
        return "." if self.decimal_separator == "," else ","

    @property
    def codec(self) -> str:
        """The Python codec name of ``encoding`` (validated at load); "auto" when it is detected."""
        if self.encoding == "auto":
            return "auto"
        return ENCODINGS[codecs.lookup(self.encoding).name]


class Condition(_Spec, kw_only=True, frozen=True):
    """A test on one cell of the row (trimmed): exactly one of the operators."""

    column: str
    equals: str | None = None
    not_equals: str | None = None
    in_: list[str] | None = msgspec.field(default=None, name="in")
    not_in: list[str] | None = None
    matches: str | None = None          # a regular expression searched in the cell
    empty: bool | None = None           # true: the cell is empty; false: it is not
    ignore_case: bool = False

    @property
    def operators(self) -> list[str]:
        """The operator keys given (valid when exactly one)."""
        names = {"in_": "in"}
        return [names.get(k, k) for k in ("equals", "not_equals", "in_", "not_in", "matches", "empty")
                if getattr(self, k) is not None]


class SplitSpec(_Spec, kw_only=True, frozen=True):
    """A generic split: the ``index``-th piece (0-based, negative from the end) on ``separator``."""

    separator: str
    index: int = 0


class FieldSpec(_Spec, kw_only=True, frozen=True):
    """Where one canonical field comes from and how its text becomes a value."""

    column: str | None = None           # the client's header name
    columns: list[str] | None = None    # several columns, joined with ``join`` (empty parts skipped)
    join: str = " "
    sum: bool = False                   # amounts: add up the amounts of ``columns`` (empty cells skipped)
    const: str | None = None            # a fixed canonical value for every row
    default: str | None = None          # canonical value when the cell is empty
    map: dict[str, str] | str | None = None  # client value (trimmed) -> canonical value, or a built-in map name
    map_default: str | None = None      # canonical value for anything not in ``map``
    map_ignore_case: bool = False
    trim: bool = True
    format: str | list[str] | None = None  # dates: strftime format(s); amounts: notation like "1.234,56"
    required: bool = False
    regex: str | None = None            # keep the first group (or the match) of this pattern
    split: str | SplitSpec | None = None  # street, house_number, last_name, first_name, postal_code, city
    case: Literal["upper", "lower", "title"] | None = None
    zero_pad: int | None = None         # digits-only values padded with leading zeros: 5 turns 1067 into 01067
    implied_decimals: int | None = None  # amounts in minor units: 2 reads 1250 as 12.50
    year_pivot: int | None = None       # two-digit years below it are 20xx, the others 19xx (default 69)
    when: Condition | None = None       # use this field only for rows where the condition holds
    else_: FieldSpec | None = msgspec.field(default=None, name="else")  # ... and this one for the others

    @property
    def source_columns(self) -> list[str]:
        """The client columns this field reads."""
        if self.column is not None:
            return [self.column]
        return list(self.columns or [])


class PartnerRule(_Spec, kw_only=True, frozen=True):
    """Rows matching ``when`` go to ``partner`` unless the row names one itself."""

    when: Condition
    partner: str


class PolicySpec(_Spec, kw_only=True, frozen=True):
    """Per-client policy applied to every mapped row."""

    hold_all: bool = False       # every accepted row is held until the client releases it
    hold_when: Condition | None = None  # rows matching it are held until the client releases them
    partner: str | None = None   # partner for claims whose row names none
    partners: list[PartnerRule] = msgspec.field(default_factory=list)  # first matching rule wins over ``partner``


class GroupSpec(_Spec, kw_only=True, frozen=True):
    """Consecutive rows sharing ``by`` form one claim with several invoices, or one debtor's several claims."""

    by: str | list[str]
    mode: Literal["invoices", "claims"] = "invoices"

    @property
    def columns(self) -> list[str]:
        """The key columns."""
        return [self.by] if isinstance(self.by, str) else list(self.by)


class MappingSpec(_Spec, kw_only=True, frozen=True):
    client: str
    version: int = 1
    format: FormatSpec = msgspec.field(default_factory=FormatSpec)
    fields: dict[str, FieldSpec]
    policy: PolicySpec = msgspec.field(default_factory=PolicySpec)
    group: GroupSpec | None = None


def mapping_file(directory: str | os.PathLike[str], client: str) -> Path:
    """Where a client's mapping lives: ``<directory>/<client>.yaml``."""
    return Path(directory) / f"{client}.yaml"


def load_mapping(path: str | os.PathLike[str]) -> MappingSpec:
    """Read and validate a mapping file; ConfigError names file, line, key and what was expected."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("mapping file not found", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"mapping files must be UTF-8 ({exc.reason} at byte {exc.start})", file=file) from None
    return parse_mapping(text, file=file)


# ---------------------------------------------------------------- YAML with line numbers

KeyPath = tuple[str | int, ...]
# YAML-typed; every other field key is text
_PLAIN_FIELD_KEYS = {"trim", "required", "map_ignore_case", "implied_decimals", "year_pivot", "zero_pad", "sum"}
_MAX_DEPTH = 20


class _Located:
    """The plain data of a YAML document plus the line of every key path in it."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {(): 1}
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ConfigError("the mapping file is empty", file=file)
            self.data = self._build(loader, node, (), raw=False)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise ConfigError(f"not valid YAML: {exc.problem or exc.context}", file=file,
                              line=mark.line + 1 if mark else None) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", file=file) from None
        finally:
            loader.dispose()

    def _build(self, loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, raw: bool) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if len(path) > _MAX_DEPTH:
            raise self.error(path, "nested too deeply")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.error(path, "keys must be plain text", line=key_node.start_mark.line + 1)
                key = str(key_node.value)
                if key in out:
                    raise self.error(path + (key,), "this key appears twice", line=key_node.start_mark.line + 1)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self._build(loader, value_node, path + (key,), raw or _is_text(path + (key,), value_node))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._build(loader, item, path + (i,), raw) for i, item in enumerate(node.value)]
        if raw:
            return None if node.tag == "tag:yaml.org,2002:null" else str(node.value)
        return loader.construct_object(node, deep=True)

    def line(self, path: KeyPath) -> int:
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]

    def error_at(self, path: KeyPath, message: str) -> ConfigError:
        """``error`` as a plain two-argument callback."""
        return self.error(path, message)

    def error(self, path: KeyPath, message: str, *, line: int | None = None) -> ConfigError:
        key = ".".join(str(p) for p in path) or None
        return ConfigError(message, file=self.file, key=key, line=line or self.line(path))


def _is_text(path: KeyPath, node: yaml.Node) -> bool:
    if len(path) == 2 and path[0] == "fields":
        return not isinstance(node, yaml.MappingNode)  # the shorthand  target: Column Name
    if len(path) == 2 and (path[0] == "group" or path == ("policy", "hold_when") or path == ("policy", "partners")):
        return True  # column names and the values rows are compared with (converted leniently)
    return len(path) == 3 and path[0] == "fields" and path[2] not in _PLAIN_FIELD_KEYS


# ---------------------------------------------------------------- validation

_S = TypeVar("_S", bound=_Spec)
_TYPE_WORDS = {"str": "a string", "int": "an integer", "bool": "true or false", "array": "a list",
               "object": "a mapping", "null": "nothing", "float": "a number", "date": "a date",
               "datetime": "a date and time"}
_ROOT_KEYS = ("client", "version", "format", "fields", "policy", "group")


def _describe(type_text: str) -> str:
    words = [_TYPE_WORDS.get(p.strip(), p.strip()) for p in type_text.split("|") if p.strip() != "null"]
    return " or ".join(words) or "nothing"


def _convert(doc: _Located, data: Any, cls: type[_S], path: KeyPath, *, strict: bool = True) -> _S:
    # strict=False where values were kept as text (conditions, else branches): "true" -> True, "2" -> 2
    try:
        return msgspec.convert(data, cls, strict=strict)
    except msgspec.ValidationError as exc:
        raise _translate(doc, str(exc), cls, path) from None


def _translate(doc: _Located, text: str, cls: type[_Spec], path: KeyPath) -> ConfigError:
    message, _, where = text.partition(" - at `$")
    for name, index, dots in re.findall(r"\.(\w+)|\[(\d+)\]|(\[\.\.\.\])", where.rstrip("`")):
        if dots:
            break
        path = path + ((name,) if name else (int(index),))
    valid = cls.__struct_fields__
    if m := re.match(r"Expected `(.+?)`, got `(.+?)`$", message):
        return doc.error(path, f"expected {_describe(m.group(1))}, got {_describe(m.group(2))}")
    if m := re.match(r"Object contains unknown field `(.+?)`$", message):
        near = difflib.get_close_matches(m.group(1), valid, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        return doc.error(path + (m.group(1),), f"unknown key{hint}; valid keys: {', '.join(valid)}")
    if m := re.match(r"Object missing required field `(.+?)`$", message):
        return doc.error(path, f"'{m.group(1)}' is required")
    if m := re.match(r"Invalid enum value (.+)$", message):
        hints = typing.get_type_hints(cls)
        allowed = [a for a in typing.get_args(hints.get(str(path[-1]), None)) if isinstance(a, str)]
        return doc.error(path, f"{m.group(1)} is not allowed; expected one of: {', '.join(allowed)}")
    return doc.error(path, message)


_TABLES = ("csv", "xlsx", "xls", "ods")


def _format_types(doc: _Located, data: Any) -> Any:
    """``type: [xls, xlsx]``: the first as ``type``, all as ``alternatives`` (tables of one layout only)."""
    if not isinstance(data, dict):
        return data
    if "alternatives" in data:
        raise doc.error(("format", "alternatives"), "unknown key; several formats are written as a list in "
                        "'type', e.g. type: [xls, xlsx]")
    types = data.get("type")
    if not isinstance(types, list):
        return data
    allowed = typing.get_args(FormatType)
    for i, kind in enumerate(types):
        if kind not in allowed:
            raise doc.error(("format", "type", i), f"{kind!r} is not allowed; expected one of: {', '.join(allowed)}")
    if not types or len(set(types)) != len(types):
        raise doc.error(("format", "type"), "expected a list of different format types, e.g. [xls, xlsx]")
    if len(types) > 1 and not all(t in _TABLES for t in types):
        raise doc.error(("format", "type"), "only csv, xlsx, xls and ods can share one mapping (xml and fixed "
                        f"width name their columns differently); got {', '.join(types)}")
    return {**data, "type": types[0], "alternatives": types if len(types) > 1 else []}


def parse_mapping(text: str, *, file: str = "<mapping>") -> MappingSpec:
    """Validate mapping text; ``file`` is used in error messages."""
    doc = _Located(text, file)
    root = doc.data
    if not isinstance(root, dict):
        raise doc.error((), f"expected a mapping with the keys {', '.join(_ROOT_KEYS)}")
    for key in root:
        if key not in _ROOT_KEYS:
            near = difflib.get_close_matches(key, _ROOT_KEYS, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise doc.error((key,), f"unknown key{hint}; valid keys: {', '.join(_ROOT_KEYS)}")
    client = root.get("client")
    if not isinstance(client, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", client):
        raise doc.error(("client",), f"expected a client id (letters, digits, '_', '-', '.'), got {client!r}")
    version = root.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise doc.error(("version",), f"expected 1 (the only mapping version so far), got {version!r}")
    fmt_data = root.get("format") or {}
    if isinstance(fmt_data, dict) and isinstance(fmt_data.get("delimiter"), str):
        fmt_data = {**fmt_data, "delimiter": _DELIMITER_NAMES.get(fmt_data["delimiter"], fmt_data["delimiter"])}
    fmt_data = _format_types(doc, fmt_data)
    fmt = _convert(doc, fmt_data, FormatSpec, ("format",))
    _check_format(doc, fmt)
    _check_layout(doc, fmt)
    if any(t in ("xlsx", "xls", "ods") for t in (fmt.type, *fmt.alternatives)):
        # Spreadsheet readers write date cells as ISO dates, and date-time cells (an invoice's timestamp) as ISO
        # date-times, which a date field takes by their day; the file's own text dates keep their formats.
        extra = [f for f in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S") if f not in fmt.date_formats]
        fmt = msgspec.structs.replace(fmt, date_formats=[*fmt.date_formats, *extra])
    policy = _convert(doc, root.get("policy") or {}, PolicySpec, ("policy",), strict=False)
    fields = _load_fields(doc, root.get("fields"))
    group = _convert(doc, root["group"], GroupSpec, ("group",), strict=False) if root.get("group") else None
    _check_policy(doc, policy, group)
    return MappingSpec(client=client, version=1, format=fmt, fields=fields, policy=policy, group=group)


def _check_format(doc: _Located, fmt: FormatSpec) -> None:
    try:
        codec = "auto" if fmt.encoding == "auto" else codecs.lookup(fmt.encoding).name
    except LookupError:
        codec = ""
    if codec not in ENCODINGS and codec != "auto":
        raise doc.error(("format", "encoding"),
                        f"expected utf-8, windows-1252, iso-8859-1 or auto, got {fmt.encoding!r}")
    for key, value in (("delimiter", fmt.delimiter), ("quotechar", fmt.quotechar)):
        if key == "delimiter" and value == "auto":
            continue
        if len(value) != 1 or value in "\r\n":
            raise doc.error(("format", key), f"expected one character, got {value!r}")
    if fmt.delimiter == fmt.quotechar:
        raise doc.error(("format", "quotechar"), "the quote character must differ from the delimiter")
    if fmt.header_row < 0:
        raise doc.error(("format", "header_row"), f"expected a line number from 1 (0: no header), "
                                                  f"got {fmt.header_row}")
    if fmt.thousands not in ("", ".", ",", " ", "'") or fmt.thousands == fmt.decimal_separator:
        raise doc.error(("format", "thousands_separator"),
                        f"expected one of '.', ',', ' ', \"'\" or '' (none) other than the decimal separator, "
                        f"got {fmt.thousands_separator!r}")
    if not fmt.date_formats:
        raise doc.error(("format", "date_formats"), "expected at least one date format, e.g. '%d.%m.%Y'")
    for i, date_format in enumerate(fmt.date_formats):
        try:
            t.check_date_format(date_format)
        except ValueError as exc:
            raise doc.error(("format", "date_formats", i), str(exc)) from None


def _check_layout(doc: _Located, fmt: FormatSpec) -> None:
    """The keys that say where columns are: header or ``columns``, sheet, record path, skip rules."""
    path: KeyPath = ("format",)
    cols = fmt.columns
    if fmt.type in ("xml", "fixed_width"):
        what = "an XPath" if fmt.type == "xml" else "{start, length}"
        if not isinstance(cols, dict) or not cols:
            raise doc.error(path + ("columns",), f"format type {fmt.type} needs 'columns': a mapping of "
                                                 f"column name -> {what}")
        for name, col in cols.items():
            if fmt.type == "xml" and not (isinstance(col, str) and col.strip()):
                raise doc.error(path + ("columns", name), "expected an XPath relative to the record, e.g. Betrag")
            if fmt.type == "fixed_width" and not (isinstance(col, FixedColumn) and col.start >= 1
                                                  and col.length >= 1 and 0 <= col.decimals <= 6):
                raise doc.error(path + ("columns", name), "expected {start: from 1, length: from 1, "
                                                          "decimals: 0 to 6}")
    elif fmt.header_row == 0:
        if not isinstance(cols, list) or not cols or not all(c.strip() for c in cols):
            raise doc.error(path + ("columns",), "header_row 0 (no header) needs 'columns': the column "
                                                 "names in file order")
    elif cols is not None:
        raise doc.error(path + ("columns",), "'columns' names the columns of a file without header "
                                             "(header_row: 0), of XML records or of fixed-width lines")
    if fmt.type == "xml":
        if not fmt.record_path or not fmt.record_path.startswith("/"):
            raise doc.error(path + ("record_path",), "format type xml needs 'record_path', an absolute path "
                                                     "like /Export/Forderung")
        from lxml import etree  # only mappings for XML pay for the import
        for name, col in (cols.items() if isinstance(cols, dict) else ()):
            try:
                etree.XPath(str(col), namespaces=fmt.namespaces or None)
            except etree.XPathError as exc:
                raise doc.error(path + ("columns", name), f"not a valid XPath: {exc}") from None
    elif fmt.record_path is not None:
        raise doc.error(path + ("record_path",), "'record_path' applies to format type xml only")
    if fmt.sheet is not None and fmt.type not in ("xlsx", "xls", "ods"):
        raise doc.error(path + ("sheet",), "'sheet' applies to xlsx, xls and ods only")
    if isinstance(fmt.sheet, int) and fmt.sheet < 1:
        raise doc.error(path + ("sheet",), f"expected a sheet name or a position from 1, got {fmt.sheet}")
    if fmt.footer_rows < 0:
        raise doc.error(path + ("footer_rows",), f"expected a number of rows from 0, got {fmt.footer_rows}")
    for column, pattern in (fmt.skip_rows_where or {}).items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise doc.error(path + ("skip_rows_where", column), f"not a valid regular expression: {exc}") from None


def _load_fields(doc: _Located, data: Any) -> dict[str, FieldSpec]:
    if not isinstance(data, dict) or not data:
        raise doc.error(("fields",), "expected a mapping of canonical fields to columns, "
                                     "e.g.  principal_amount: Betrag")
    fields: dict[str, FieldSpec] = {}
    for name, raw in data.items():
        path: KeyPath = ("fields", name)
        if name not in TARGETS:
            near = closest_targets(name)
            hint = f"did you mean {', '.join(near)}? " if near else ""
            raise doc.error(path, f"'{name}' is not a canonical field; {hint}"
                                  "valid fields are listed in gateway/mapping/targets.py")
        if isinstance(raw, str):
            raw = {"column": raw}
        elif not isinstance(raw, dict):
            raise doc.error(path, f"expected a column name or a mapping with column, columns or const, "
                                  f"got {'nothing' if raw is None else 'a list'}")
        spec = _convert(doc, raw, FieldSpec, path, strict=False)
        _check_field(doc, name, spec, path)
        fields[name] = spec
    for name, target in TARGETS.items():
        if target.always_required and name not in fields:
            raise doc.error(("fields",), f"the mapping must fill '{name}'")
    return fields


def _check_field(doc: _Located, name: str, spec: FieldSpec, path: KeyPath) -> None:
    sources = [k for k in ("column", "columns", "const") if getattr(spec, k) is not None]
    if len(sources) != 1:
        got = f"got {' and '.join(sources)}" if sources else "got none"
        raise doc.error(path, f"expected exactly one of column, columns or const; {got}")
    if spec.column is not None and not spec.column.strip():
        raise doc.error(path + ("column",), "expected a column name, got an empty string")
    if spec.columns is not None and not (spec.columns and all(c.strip() for c in spec.columns)):
        raise doc.error(path + ("columns",), "expected a list of one or more column names")
    if spec.const is not None:
        for key in ("default", "map", "map_default", "format"):
            if getattr(spec, key) is not None:
                raise doc.error(path + (key,), f"'{key}' has no effect on a const field")
    target = TARGETS[name]
    canonical = canonical_parser(target)
    for key in ("const", "default", "map_default"):
        value = getattr(spec, key)
        if value is not None:
            _check_canonical(doc, canonical, value, path + (key,))
    if spec.map_default is not None and spec.map is None:
        raise doc.error(path + ("map_default",), "'map_default' needs a 'map'")
    check_transforms(name, spec, path, doc.error_at)
    if spec.else_ is not None:
        _check_field(doc, name, spec.else_, path + ("else",))
    if isinstance(spec.map, dict):
        seen: dict[str, str] = {}
        for key, value in spec.map.items():
            _check_canonical(doc, canonical, value, path + ("map", key))
            folded = key.strip().casefold() if spec.map_ignore_case else key.strip()
            if folded in seen:
                raise doc.error(path + ("map", key), f"'{key}' is the same value as '{seen[folded]}'")
            seen[folded] = key
    if spec.format is not None:
        _check_field_format(doc, target.kind, spec.format, path + ("format",))


def _check_policy(doc: _Located, policy: PolicySpec, group: GroupSpec | None) -> None:
    check_policy(policy, group, doc.error_at)


def _check_canonical(doc: _Located, parse: Any, value: str, path: KeyPath) -> None:
    try:
        parse(value)
    except t.TransformError as exc:
        raise doc.error(path, exc.client_message) from None  # the mapping's own value, not a debtor's


def _check_field_format(doc: _Located, kind: Kind, value: str | list[str], path: KeyPath) -> None:
    if kind is Kind.DATE:
        for date_format in [value] if isinstance(value, str) else value:
            try:
                t.check_date_format(date_format)
            except ValueError as exc:
                raise doc.error(path, str(exc)) from None
    elif kind is Kind.AMOUNT:
        if not isinstance(value, str):
            raise doc.error(path, "expected one amount notation like '1.234,56', got a list")
        try:
            t.parse_decimal_format(value)
        except ValueError as exc:
            raise doc.error(path, str(exc)) from None
    else:
        raise doc.error(path, "'format' applies to date and amount fields only")


def field_date_formats(spec: FieldSpec, fmt: FormatSpec) -> tuple[str, ...]:
    """The date formats in effect for a field: its own ``format`` or the file's ``date_formats``."""
    if spec.format is None:
        return tuple(fmt.date_formats)
    return (spec.format,) if isinstance(spec.format, str) else tuple(spec.format)


def field_decimal(spec: FieldSpec, fmt: FormatSpec) -> tuple[str, str]:
    """(decimal, thousands) in effect for an amount field."""
    if isinstance(spec.format, str):
        return t.parse_decimal_format(spec.format)
    return fmt.decimal_separator, fmt.thousands
