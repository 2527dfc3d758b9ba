"""Read the head of an unseen client file for ``mapping suggest``: its format, header and sample rows.

CSV: encoding and delimiter are detected (the readers' own sniffing); spreadsheets: the first sheet,
header in row 1; XML: the record element is the most repeated element path, its columns the paths
of the text-bearing elements and attributes below it (relative XPath, as ``format.columns`` takes).
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.mapping.spec import ENCODINGS, FixedColumn, FormatSpec
from gateway.readers.base import open_reader
from gateway.readers.sniff import DELIMITERS, detect_encoding, sniff_delimiter

SAMPLE_ROWS = 200
_TYPES = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xls",
          ".ods": "ods", ".xml": "xml", ".dat": "fixed_width"}
_ENCODING_NAMES = {"utf-8": "utf-8", "cp1252": "windows-1252", "iso8859-1": "iso-8859-1"}


@dataclass
class Sample:
    """What ``suggest`` knows of a file: the format keys to write, the header, the first rows."""

    format: dict[str, Any]
    header: list[str]
    rows: list[list[str]]
    nested: bool = False  # column names are element paths (XML)
    headerless: bool = False  # fixed width: generated column names, fields placed by value and order
    date_formats: dict[str, str | None] = field(default_factory=dict)  # headerless: column -> its date format
    repeated: set[str] = field(default_factory=set)  # xml: columns of elements a record has several of
    summed: set[str] = field(default_factory=set)  # xml: repeated numbers read as their sum (fees)


def read_sample(path: Path, format_type: str | None = None, limits: LimitsConfig | None = None,
                layout: Path | None = None) -> Sample:
    """The first rows of ``path`` (read under ``limits``); InputError if it cannot be read or its type is unknown.

    ``layout``: the client's record description of a fixed-width file (see ``suggest_layout``).
    """
    try:
        if path.stat().st_size == 0:
            raise InputError("the file is empty: nothing to draft a mapping from", file=str(path))
    except OSError as exc:
        raise InputError(f"cannot open the file: {exc.strerror}", file=str(path)) from None
    if layout is not None:
        return _layout_sample(path, layout, limits)
    kind = format_type or _TYPES.get(path.suffix.lower())
    if kind == "fixed_width":
        from gateway.mapping.suggest_fixed import read_fixed_sample
        return read_fixed_sample(path)
    if kind is None:
        raise InputError(f"cannot tell the file type from '{path.suffix}'; pass --type csv|xlsx|xls|ods|xml|"
                         "fixed_width", file=str(path))
    if kind == "csv":
        encoding = detect_encoding(path)
        with open(path, encoding=encoding, newline="") as fh:
            head = [ln.removeprefix("\ufeff") for _, ln in zip(range(40), fh)]
        titled = _csv_header(head)
        try:
            delimiter = titled[0] if titled else sniff_delimiter(head[0], str(path), 1)
        except InputError:
            if format_type:
                raise
            from gateway.mapping.suggest_fixed import read_fixed_sample
            return read_fixed_sample(path)  # no delimiter in the first line: records by position
        header_row = titled[1] if titled else 1
        fmt: dict[str, Any] = {"type": "csv", "encoding": _ENCODING_NAMES.get(encoding, encoding),
                               "delimiter": delimiter, **({"header_row": header_row} if header_row > 1 else {})}
        spec = FormatSpec(type="csv", encoding=encoding, delimiter=delimiter, header_row=header_row)
    elif kind in ("xlsx", "xls", "ods"):
        sheet, header_row = _sheet_layout(path, kind, limits)
        fmt = {"type": kind, "sheet": sheet, "header_row": header_row}
        spec = FormatSpec(type=kind, sheet=sheet, header_row=header_row)  # type: ignore[arg-type]
    elif kind == "xml":
        record_path, columns, namespaces, repeated = _xml_layout(path)
        fmt = {"type": "xml", "record_path": record_path, **({"namespaces": namespaces} if namespaces else {}),
               "columns": columns}
        xml_columns: dict[str, str | FixedColumn] = dict(columns)
        spec = FormatSpec(type="xml", record_path=record_path, namespaces=namespaces, columns=xml_columns)
    else:
        raise InputError(f"suggest reads csv, xlsx, xls, ods, xml and fixed_width files, not {kind}",
                         file=str(path))
    rows: list[list[str]] = []
    with open_reader(path, spec, limits=limits) as reader:
        header = list(reader.header)
        for src in reader:
            rows.append(list(src.values))
            if len(rows) >= SAMPLE_ROWS:
                break
    if rows and len(rows) < SAMPLE_ROWS and any(_SUM.match(v.strip()) for v in rows[-1]):
        fmt["footer_rows"] = 1  # the whole file was read and its last row is a sum line
        rows.pop()
    if kind == "xml":
        summed = {n for n in repeated if columns[n].startswith("sum(")}
        return Sample(fmt, header, rows, nested=True, repeated=repeated - summed, summed=summed)
    return Sample(fmt, header, rows)


def _csv_header(lines: list[str]) -> tuple[str, int] | None:
    """(delimiter, header line) when title lines come first ("Offene Posten, Stand 31.03." above the header):
    the header is the first line with as many delimiters as most lines have. None when the first line is it."""
    best: tuple[tuple[int, int], str, int] | None = None
    for d in DELIMITERS:
        counts = [_count(ln, d) for ln in lines]
        filled = [c for c in counts if c]
        if len(filled) < 2:
            continue
        mode, freq = Counter(filled).most_common(1)[0]
        if freq >= 2 and (best is None or (freq, mode) > best[0]):
            best = ((freq, mode), d, next(i for i, c in enumerate(counts) if c == mode))
    if best is None or best[2] == 0:
        return None
    return best[1], best[2] + 1


def _count(line: str, delimiter: str) -> int:
    quoted, n = False, 0
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            n += 1
    return n


_SUM = re.compile(r"(?i)^(summe|gesamt|total|sum)\b")


def _sheet_layout(path: Path, kind: str, limits: LimitsConfig | None) -> tuple[int, int]:
    """(sheet number, header row): the sheet with the most filled cells, its first row of only text labels
    that is as wide as the widest row near the top (title blocks above the header are skipped)."""
    best: tuple[int, int, int] = (-1, 1, 1)  # filled cells, sheet, header row
    for number in range(1, 64):
        try:
            reader = open_reader(path, FormatSpec(type=kind, sheet=number, header_row=1),  # type: ignore[arg-type]
                                 limits=limits)
        except InputError:
            break  # no such sheet (or an empty one): the sheets are done
        with reader:
            top = [reader.header] + [src.values for _, src in zip(range(30), reader)]
        filled = [sum(1 for v in r if v.strip()) for r in top]
        widest = max(filled)
        header = next(i for i, r in enumerate(top) if filled[i] >= 0.8 * widest
                      and all(not _NUMBER.match(v.strip()) for v in r if v.strip()))
        if sum(filled) > best[0]:
            best = (sum(filled), number, header + 1)
    return best[1], best[2]


_NUMBER = re.compile(r"^[-+]?[\d.,]+$|^\d{4}-\d{2}-\d{2}")


def _xml_layout(path: Path) -> tuple[str, dict[str, str], dict[str, str], set[str]]:
    """(record path, column name -> relative XPath, namespaces, repeated columns) from the first records.

    A value a record holds several times (``Mahnung/@gebuehr`` of each dunning letter) is repeated: when
    every occurrence is a number its column reads their sum (``sum(...)``: the fees of all letters)."""
    paths: Counter[str] = Counter()
    elements: dict[str, list[Any]] = {}
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        tree = etree.parse(str(path), parser)
    except (etree.XMLSyntaxError, OSError) as exc:
        raise InputError(f"not readable XML: {exc}", file=str(path)) from None
    docinfo: Any = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise InputError("the XML document has a DOCTYPE declaration; documents with a DTD are refused",
                         file=str(path))
    root = tree.getroot()
    ns_uri = etree.QName(root).namespace
    namespaces = {"c": ns_uri} if ns_uri else {}

    def step(el: Any) -> str:
        q = etree.QName(el)
        return f"c:{q.localname}" if q.namespace and q.namespace == ns_uri else q.localname

    def walk(el: Any, prefix: str) -> None:
        for child in el:
            if not isinstance(child.tag, str):
                continue
            p = f"{prefix}/{step(child)}"
            paths[p] += 1
            elements.setdefault(p, []).append(child)
            if paths[p] <= SAMPLE_ROWS:
                walk(child, p)

    walk(root, "/" + step(root))
    records = [(n, p) for p, n in paths.items() if n > 1 and any(len(e) for e in elements[p][:1])]
    if not records:
        raise InputError("found no repeated record element in the XML file", file=str(path))
    record_path = max(records, key=lambda np: (np[0], -np[1].count("/")))[1]
    columns: dict[str, str] = {}
    repeated: set[str] = set()
    numeric: dict[str, bool] = {}
    for record in elements[record_path][:SAMPLE_ROWS]:
        counts = Counter(_leaves(record, step))
        for rel, n in counts.items():
            name = rel.replace("c:", "").replace("@", "").replace("/", ".")
            columns.setdefault(name, rel)
            if n > 1:
                repeated.add(name)
            texts = [v if isinstance(v, str) else (v.text or "") for v in record.xpath(rel, namespaces=namespaces)]
            numeric[name] = numeric.get(name, True) and all(_PLAIN_NUMBER.match(t.strip()) for t in texts)
    for name in repeated:
        if numeric.get(name):
            columns[name] = f"sum({columns[name]})"
    return record_path, columns, namespaces, repeated


_PLAIN_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _leaves(el: Any, step: Any, prefix: str = "") -> list[str]:
    out = [f"{prefix}@{a}" for a in el.attrib] if not prefix else []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        rel = f"{prefix}{step(child)}"
        out.extend(f"{rel}/@{a}" for a in child.attrib)
        if len(child):
            out.extend(_leaves(child, step, rel + "/"))
        elif (child.text or "").strip() or not child.attrib:  # an element of attributes only has no text column
            out.append(rel)
    return out


def _layout_sample(path: Path, layout: Path, limits: LimitsConfig | None) -> Sample:
    """A fixed-width file read by the columns of its record description, named as the client names them."""
    from gateway.mapping.suggest_fixed import _is_title
    from gateway.mapping.suggest_layout import described_encoding, read_layout

    fields = read_layout(layout, limits)
    named = described_encoding(layout)  # bytes alone cannot tell ISO-8859-1 from Windows-1252
    encoding = ENCODINGS[codecs.lookup(named).name] if named else detect_encoding(path)
    with open(path, encoding=encoding, newline="") as fh:
        lines = [ln.rstrip("\r\n").removeprefix("\ufeff") for _, ln in zip(range(SAMPLE_ROWS + 1), fh)]
    lines = [ln for ln in lines if ln.strip()]
    width = max(f.start + f.length - 1 for f in fields)
    title = len(lines) > 2 and (len(lines[0]) < 0.8 * min(width, max(len(ln) for ln in lines[1:]))
                                or _is_title(lines[0], lines[1:], max(len(ln) for ln in lines)))
    columns = {f.name: FixedColumn(start=f.start, length=f.length, decimals=f.decimals) for f in fields}
    spec = FormatSpec(type="fixed_width", encoding=encoding, header_row=2 if title else 1, decimal_separator=",",
                      columns=dict(columns))
    rows: list[list[str]] = []
    with open_reader(path, spec, limits=limits) as reader:
        for src in reader:
            rows.append(list(src.values))
            if len(rows) >= SAMPLE_ROWS:
                break
    fmt: dict[str, Any] = {"type": "fixed_width", "encoding": _ENCODING_NAMES.get(encoding, encoding),
                           **({"header_row": 2} if title else {}), "decimal_separator": ",",
                           "columns": {f.name: {"start": f.start, "length": f.length,
                                                **({"decimals": f.decimals} if f.decimals else {})} for f in fields}}
    return Sample(fmt, list(columns), rows, date_formats={f.name: f.date_format for f in fields if f.date_format})
