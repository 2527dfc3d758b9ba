"""Fixed-width layouts from the client's record description (``mapping suggest --layout FILE``).

Legacy exports come with a record description ("Satzbeschreibung"): a table of field, start and length
(or start and end), often with a type or format column. It may be a text file (columns aligned with
spaces, or separated by ``|``, ``;`` or tabs), a CSV file, or a spreadsheet (XLSX, XLS, ODS). The header
row is found by its names, German or English (Feld/Feldname/Bezeichnung/Field, Start/Beginn/Von/Position,
Länge/Stellen/Length, Bis/Ende/End, Dezimalstellen/Decimals, Typ/Format/Beschreibung/Type/Description);
a table without a header is read as ``name start length [text]`` lines. Amounts "in Cent", "2
Nachkommastellen" or with a decimals column get ``decimals``; dates written as TTMMJJJJ, DDMMYYYY,
JJJJMMTT, YYYYMMDD ... get their format; filler fields (Frei, Filler, Reserve) are left out.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.readers.sniff import detect_encoding

_NAME = ("feld", "feldname", "feldbezeichnung", "bezeichnung", "name", "field", "fieldname", "column", "spalte",
         "inhalt")
_START = ("start", "beginn", "von", "pos", "position", "from", "offset", "anfang", "ab", "startpos", "startposition")
_LENGTH = ("laenge", "len", "length", "stellen", "size", "width", "anzahl", "groesse")
_END = ("bis", "ende", "end", "to", "endpos")
_DECIMALS = ("dezimalstellen", "nachkommastellen", "dez", "decimals", "dec", "scale", "nk")
_TEXT = ("typ", "type", "format", "art", "beschreibung", "description", "bemerkung", "remarks", "inhalt", "datentyp")
_FILLER = re.compile(r"(?i)^(frei|filler|reserve|reserviert|leer|rest|blank|unused|spare)\b")
_DATE_WORDS = [(re.compile(p, re.IGNORECASE), f) for p, f in (
    (r"TT\.MM\.JJJJ|DD\.MM\.YYYY", "%d.%m.%Y"), (r"JJJJ-MM-TT|YYYY-MM-DD", "%Y-%m-%d"),
    (r"TTMMJJJJ|DDMMYYYY", "%d%m%Y"), (r"JJJJMMTT|YYYYMMDD", "%Y%m%d"), (r"TTMMJJ|DDMMYY", "%d%m%y"),
    (r"JJMMTT|YYMMDD", "%y%m%d"))]
_CENTS = re.compile(r"(?i)\bcents?\b|\bin cent|minor units|implied")
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_NK = re.compile(r"(?i)(\d)\s*(?:nachkommastellen|dezimalstellen|decimals|decimal places|nk)")


@dataclass
class LayoutField:
    """One field of a record description."""

    name: str
    start: int  # 1-based
    length: int
    decimals: int = 0
    date_format: str | None = None


def _norm(text: str) -> str:
    t = text.lower().translate(_UMLAUTS)
    return re.sub(r"[^a-z0-9]", "", t)


def _rows(path: Path, limits: LimitsConfig | None) -> list[list[str]]:
    kind = path.suffix.lower().lstrip(".")
    if kind in ("xlsx", "xlsm", "xls", "ods"):
        from gateway.mapping.spec import FormatSpec
        from gateway.readers.base import open_reader
        spec = FormatSpec(type="xlsx" if kind == "xlsm" else kind, header_row=1)  # type: ignore[arg-type]
        with open_reader(path, spec, limits=limits) as reader:
            return [list(reader.header)] + [list(src.values) for _, src in zip(range(500), reader)]
    encoding = detect_encoding(path)
    with open(path, encoding=encoding, newline="") as fh:
        lines = [ln.rstrip("\r\n").removeprefix("\ufeff") for _, ln in zip(range(500), fh)]
    if kind == "csv" or any(ln.count(";") >= 2 or ln.count("\t") >= 2 or ln.count("|") >= 2 for ln in lines[:20]):
        sample = "\n".join(lines[:20])
        delim = max(";,\t|", key=sample.count)
        return [[c.strip() for c in r] for r in csv.reader(lines, delimiter=delim)]
    return [[c.strip() for c in re.split(r"\s{2,}|\t", ln.strip())] for ln in lines]


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    keys = [_norm(h) for h in header]
    for name in names:
        for i, k in enumerate(keys):
            if k == name or (len(name) >= 4 and k.startswith(name)):
                return i
    return None


def _int(text: str) -> int | None:
    t = text.strip()
    if re.fullmatch(r"\d+(?:[.,]0+)?", t):
        return int(re.split(r"[.,]", t)[0])
    return None


def read_layout(path: Path, limits: LimitsConfig | None = None) -> list[LayoutField]:
    """The fields of a record description; InputError when no field/start/length table is found."""
    rows = [r for r in _rows(path, limits) if any(c.strip() for c in r)]
    head = None
    for i, r in enumerate(rows[:30]):
        if _find(r, _NAME) is not None and _find(r, _START) is not None and (
                _find(r, _LENGTH) is not None or _find(r, _END) is not None):
            head = i
            break
    fields: list[LayoutField] = []
    if head is not None:
        h = rows[head]
        ni, si, li, ei = _find(h, _NAME), _find(h, _START), _find(h, _LENGTH), _find(h, _END)
        di = _find(h, _DECIMALS)
        ti = [i for i, k in enumerate(h) if i not in (ni, si, li, ei, di) and _norm(k)]
        for r in rows[head + 1:]:
            def cell(i: int | None, r: list[str] = r) -> str:
                return r[i] if i is not None and i < len(r) else ""
            start = _int(cell(si))
            length = _int(cell(li)) if li is not None else None
            end = _int(cell(ei)) if ei is not None else None
            if length is None and start is not None and end is not None:
                length = end - start + 1
            if not cell(ni) or start is None or not length:
                continue
            text = " ".join(cell(i) for i in ti)
            fields.append(_field(cell(ni), start, length, text, _int(cell(di)) if di is not None else None))
    else:
        for r in rows:
            m = re.match(r"^\s*(\S.*?)\s+(\d+)\s+(\d+)(?:\s+(.*))?$", " ".join(r))
            if m:
                fields.append(_field(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4) or "", None))
    if not fields:
        raise InputError("found no table of field, start and length in the layout description", file=str(path))
    if min(f.start for f in fields) == 0:  # counted from 0
        for f in fields:
            f.start += 1
    return [f for f in fields if not _FILLER.match(f.name)]


def _field(name: str, start: int, length: int, text: str, decimals: int | None) -> LayoutField:
    fmt = next((f for p, f in _DATE_WORDS if p.search(text) and len(f.replace("%", "")) * 1 <= 10), None)
    nk = _NK.search(text)
    dec = decimals if decimals is not None else int(nk.group(1)) if nk else 2 if _CENTS.search(text) else 0
    return LayoutField(name.strip(), start, length, dec if fmt is None else 0, fmt)


_ENCODING_WORDS = [(re.compile(p, re.IGNORECASE), e) for p, e in (
    (r"ISO[- ]?8859[- ]?1\b|Latin[- ]?1", "iso-8859-1"), (r"Windows[- ]?1252|cp[- ]?1252|ANSI", "windows-1252"),
    (r"UTF[- ]?8", "utf-8"))]


def described_encoding(path: Path) -> str | None:
    """The text encoding a text or CSV record description names ("Zeichensatz ISO-8859-1"), if any."""
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        return None
    text = path.read_bytes()[:65536].decode("latin-1")
    return next((e for p, e in _ENCODING_WORDS if p.search(text)), None)
