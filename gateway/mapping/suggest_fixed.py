"""Fixed-width files for ``mapping suggest``: infer the columns from the records, place fields by value.

With no header to match, the layout comes from the records themselves: a position where every record
has a space separates columns, so does a change from digits to letters in every record; a run of digits
is cut into dates (8 or 6 digits that read as a date in most records) and numbers (amounts in cents,
as legacy exports write them; a block of positions that hold 0 in nearly every record, after positions
whose digits vary, starts the next number); a sign column after a number joins it. A text run filled in
few records right after a text field is that field's further words ("Frankfurt am Main"). A first line that does not fit
the records' pattern is a title. Fields are then placed by their values and their order.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

from gateway.errors import InputError
from gateway.mapping.sample import SAMPLE_ROWS, Sample
from gateway.readers.sniff import detect_encoding

_ENCODING_NAMES = {"utf-8": "utf-8", "cp1252": "windows-1252", "iso8859-1": "iso-8859-1"}
_DATES = {8: ("%Y%m%d", "%d%m%Y"), 6: ("%d%m%y",)}  # YYMMDD is left out: too many amounts read as one
_MOST = 0.75  # share of records a pattern must hold in


def _cls(ch: str) -> str:
    return "S" if ch == " " else "D" if ch.isdigit() else "L" if ch.isalpha() else "P"


def read_fixed_sample(path: Path) -> Sample:
    """The layout and first records of a fixed-width file, as a Sample with generated column names."""
    encoding = detect_encoding(path)
    with open(path, encoding=encoding, newline="") as fh:
        lines = [ln.rstrip("\r\n").removeprefix("\ufeff") for _, ln in zip(range(SAMPLE_ROWS + 1), fh)]
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) < 2:
        raise InputError("too few records to infer fixed-width columns", file=str(path))
    width = Counter(len(ln) for ln in lines).most_common(1)[0][0]
    title = _is_title(lines[0], lines[1:], width)
    records = [ln.ljust(width) for ln in (lines[1:] if title else lines)]
    fields = _fields(records, width)
    columns: dict[str, dict[str, Any]] = {}
    for start, end, kind in fields:
        name = f"{kind}_{start + 1}"
        columns[name] = {"start": start + 1, "length": end - start, **({"decimals": 2} if kind == "amount" else {})}
    rows = [[_cell(r, s, e, k) for s, e, k in fields] for r in records]
    fmt: dict[str, Any] = {"type": "fixed_width", "encoding": _ENCODING_NAMES.get(encoding, encoding),
                           "header_row": 2 if title else 1, "decimal_separator": ",", "columns": columns}
    return Sample(fmt, list(columns), rows, headerless=True,
                  date_formats={f"{k}_{s + 1}": _date_format([r[s:e] for r in records]) for s, e, k in fields
                                if k == "date"})


def _cell(record: str, start: int, end: int, kind: str) -> str:
    text = record[start:end].strip()
    if kind == "amount" and text:  # as the reader writes implied decimals
        sign = "-" if text.endswith("-") or text.startswith("-") else ""
        digits = text.strip("+-").lstrip("0").rjust(3, "0")
        return f"{sign}{digits[:-2]},{digits[-2:]}" if digits.isdigit() else text
    return text


def _is_title(first: str, rest: list[str], width: int) -> bool:
    """A first line without digits where the records have them (a title, a header of labels)."""
    first = first.ljust(width)
    digits = [p for p in range(width) if sum(r[p:p + 1].isdigit() for r in rest) >= _MOST * len(rest)]
    return bool(digits) and sum(not first[p].isdigit() for p in digits) > 0.2 * len(digits)


def _fields(records: list[str], width: int) -> list[tuple[int, int, str]]:
    n = len(records)
    counts = [Counter(_cls(r[p]) for r in records) for p in range(width)]
    gap = [c["S"] == n for c in counts]
    for p in range(1, width - 1):  # one space between words in most records: inside a field, not between two
        if gap[p] and not gap[p - 1] and not gap[p + 1] and sum(
                r[p - 1] != " " and r[p + 1] != " " for r in records) >= 0.5 * n:
            gap[p] = False
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for p in range(width + 1):
        cut = p == width or gap[p] or (p > 0 and start is not None and counts[p - 1]["D"] >= _MOST * n
                                        and counts[p]["L"] >= _MOST * n)
        if cut and start is not None:
            runs.append((start, p))
            start = None
        if p < width and not gap[p] and start is None:
            start = p
    out: list[tuple[int, int, str]] = []
    for a, b in runs:
        end = b - 1 if b - a > 1 and _is_sign_only(counts, b - 1, b, n) else b  # a trailing sign column
        if all(counts[p]["D"] >= _MOST * n for p in range(a, end)) or _is_sign_only(counts, a, b, n):
            out.extend(_digit_fields(records, a, end, counts, n))
            if end < b:
                out.append((end, b, "sign"))
        else:
            out.append((a, b, "text"))
    out = _merge_words(_attach_signs(out, counts, n), records)
    # a field reaches to the next one: the widest value in the sample is not the widest there will be
    return [(s, out[i + 1][0] if i + 1 < len(out) else width, k) for i, (s, _, k) in enumerate(out)]


def _is_sign_only(counts: list[Counter[str]], a: int, b: int, n: int) -> bool:
    return b - a == 1 and counts[a]["P"] + counts[a]["S"] == n


def _digit_fields(records: list[str], a: int, b: int, counts: list[Counter[str]],
                  n: int) -> list[tuple[int, int, str]]:
    if _is_sign_only(counts, a, b, n):
        return [(a, b, "sign")]
    dates: list[tuple[int, int]] = []
    for size in (8, 6):  # eight-digit dates first: a six-digit window inside one would also read as a date
        i = a
        while i + size <= b:
            free = all(e <= i or s >= i + size for s, e in dates)
            if free and _date_format([r[i:i + size] for r in records]):
                dates.append((i, i + size))
                i += size
            else:
                i += 1
    out: list[tuple[int, int, str]] = []
    cursor = a
    for s, e in sorted(dates):
        if s > cursor:
            out.extend(_numbers(records, cursor, s))
        out.append((s, e, "date"))
        cursor = e
    if cursor < b:
        out.extend(_numbers(records, cursor, b))
    return out


def _numbers(records: list[str], a: int, b: int) -> list[tuple[int, int, str]]:
    """Numbers written side by side with leading zeros ("0000045990" "00001200"): a block of positions that
    hold 0 in nearly every record, between positions whose digits vary, starts the next number."""
    zero = [sum(r[p] == "0" for r in records) >= 0.9 * len(records) for p in range(a, b)]
    cuts = [a]
    for i in range(1, len(zero)):
        if zero[i] and not zero[i - 1] and any(not z for z in zero[i:]) and a + i - cuts[-1] >= 3:
            cuts.append(a + i)
    cuts.append(b)
    return [(s, e, _number_kind(records, s, e)) for s, e in zip(cuts, cuts[1:])]


def _number_kind(records: list[str], a: int, b: int) -> str:
    values = [r[a:b].strip() for r in records if r[a:b].strip()]
    if b - a in (4, 5) and all(len(v) == b - a for v in values):
        return "code"  # postcodes, not amounts
    return "amount" if b - a >= 6 and sum(v.startswith("0") for v in values) >= _MOST * len(values) else "code"


def _date_format(cells: list[str]) -> str | None:
    """The format reading (nearly) every cell as a date from 1900 to 2099, or None."""
    values = [c.strip() for c in cells if c.strip()]
    if not values or len(values) < 0.5 * len(cells):
        return None
    for fmt in _DATES.get(len(values[0]), ()):
        ok = 0
        for v in values:
            try:
                ok += 1900 <= datetime.strptime(v, fmt).year < 2100
            except ValueError:
                pass
        if ok >= max(_MOST * len(values), len(values) - 1) and ok >= 2:
            return fmt
    return None


def _merge_words(fields: list[tuple[int, int, str]], records: list[str]) -> list[tuple[int, int, str]]:
    """A text run filled in few records right after a text field is that field's further words
    ("Frankfurt am Main" where most cities are one word), not a column of its own."""
    out: list[tuple[int, int, str]] = []
    for s, e, kind in fields:
        filled = sum(bool(r[s:e].strip()) for r in records)
        if kind == "text" and out and out[-1][2] == "text" and s - out[-1][1] <= 2 and filled <= 0.5 * len(records):
            out[-1] = (out[-1][0], e, "text")
        else:
            out.append((s, e, kind))
    return out


def _attach_signs(fields: list[tuple[int, int, str]], counts: list[Counter[str]],
                  n: int) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for s, e, kind in fields:
        if kind == "sign" and out and out[-1][2] == "amount" and out[-1][1] == s:
            out[-1] = (out[-1][0], e, "amount")
        elif kind != "sign":
            out.append((s, e, kind))
    return out


def place_headerless(sample: Sample) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Canonical field -> options, and why, from the values and order of headerless columns."""
    fields: dict[str, dict[str, Any]] = {}
    why: dict[str, str] = {}
    cols = {name: [r[i] for r in sample.rows if r[i]] for i, name in enumerate(sample.header)}

    def put(target: str, name: str, reason: str, **options: Any) -> None:
        fields[target] = {"column": name, **options}
        why[target] = reason

    texts = [n for n in cols if n.startswith("text_")]
    codes = [n for n in cols if n.startswith("code_")]
    ref = next((n for n in [*texts, *codes] if cols[n] and len(set(cols[n])) == len(cols[n])
                and re.search(r"\d", cols[n][0])), None)
    if ref:
        put("creditor_reference", ref, "the first column with a distinct, numbered value per record")
    amounts = [n for n in cols if n.startswith("amount_")]
    if amounts:
        put("principal_amount", amounts[0], "the first amount (written in cents)")
    if len(amounts) > 1:
        put("fees.dunning", amounts[1], "the second amount: in such exports most often the dunning fees")
    dates = [n for n in cols if n.startswith("date_")]
    year = date.today().year
    births = [n for n in dates if _years(cols[n], sample.date_formats.get(n)) < year - 14]
    for n in births[:1]:
        put("debtor.birth_date", n, "dates decades ago", format=sample.date_formats[n])
    for target, n in zip(("invoice_date", "due_date"), [d for d in dates if d not in births]):
        put(target, n, "dates in record order", format=sample.date_formats[n])
    names = [n for n in texts if n != ref and not any(re.search(r"\d", v) for v in cols[n])]
    street = next((n for n in texts if n != ref and cols[n] and sum(bool(re.search(r"\D\s*\d+\s*[a-zA-Z]?$", v))
                                                                     for v in cols[n]) >= _MOST * len(cols[n])
                   and not re.match(r"^\d{4,5}\s", cols[n][0])), None)
    place = next((n for n in texts if cols[n] and sum(bool(re.match(r"^(?:[A-Z]-)?\d{4,5}\s+\S", v))
                                                      for v in cols[n]) >= _MOST * len(cols[n])), None)
    if names and any("," in v for v in cols[names[0]]):
        put("debtor.last_name", names[0], "'Nachname, Vorname' in one field", split="last_name")
        put("debtor.first_name", names[0], "'Nachname, Vorname' in one field", split="first_name")
        names = names[1:]
    elif len(names) >= 2:
        put("debtor.last_name", names[0], "the first name-like field (German order: Name, Vorname)")
        put("debtor.first_name", names[1], "the second name-like field")
        names = names[2:]
    if street:
        put("debtor.street", street, "text ending in a house number", split="street")
        put("debtor.house_number", street, "text ending in a house number", split="house_number")
    if place:
        put("debtor.postal_code", place, "'PLZ Ort' in one field", split="postal_code")
        put("debtor.city", place, "'PLZ Ort' in one field", split="city")
    else:
        plz = next((n for n in codes if cols[n] and all(re.fullmatch(r"\d{4,5}", v) for v in cols[n])), None)
        if plz:
            put("debtor.postal_code", plz, "four- or five-digit codes")
            city = next((n for n in names if _start(n) > _start(plz)), None)
            if city:
                put("debtor.city", city, "the name-like field after the postcode")
    return fields, why


def _start(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def _years(values: list[str], fmt: str | None) -> float:
    years = []
    for v in values:
        try:
            years.append(datetime.strptime(v, fmt or "%Y%m%d").year)
        except ValueError:
            pass
    return sum(years) / len(years) if years else 9999
