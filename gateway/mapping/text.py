"""Text transforms applied to a cell before it is parsed: regex extract, split, case.

Each factory compiles its options once and returns a fast ``str -> str`` function; an empty
result means "no value" (the field's ``default`` or ``required`` then applies). No I/O here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

TextFn = Callable[[str], str]

# What XML 1.0 cannot carry even escaped (services/render.py refuses it in a partner batch). Readers pass it
# on: a NUL past a CSV's first bytes, FileMaker's vertical tab for a line break, Excel's _x001F_ escapes.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def composed(values: list[str]) -> list[str]:
    """The cells in Unicode's composed form (NFC), as SOAP and the console take text: "Mu\u0308ller" (macOS,
    some exports) is "Müller", so a reference or name compares equal however the file wrote it."""
    if all(v.isascii() or unicodedata.is_normalized("NFC", v) for v in values):
        return values
    return [unicodedata.normalize("NFC", v) for v in values]

# "Musterstr. 12a", "Am Hang 3-5", "Hauptstraße 12 b", "Weg 7/1": the number is the trailing part.
_STREET = re.compile(r"^(?P<street>.*?\D)\s*(?P<number>\d+(?:\s*[a-zA-Z])?(?:\s*[-/]\s*\d+(?:\s*[a-zA-Z])?)?)$")
# "12345 Berlin", "D-12345 Berlin", "A-1010 Wien", "1010 Wien", "NL 1234 AB Amsterdam"
_POSTCODE = re.compile(r"^(?:[A-Z]{1,2}\s*-\s*)?(?P<code>\d{4}\s?[A-Z]{2}(?=\s)|\d{4,5})\s+(?P<city>.+)$")

SPLITS = ("street", "house_number", "last_name", "first_name", "postal_code", "city")
CASES = ("upper", "lower", "title")


def _street(s: str) -> tuple[str, str]:
    m = _STREET.match(s.strip())
    if m is None:
        return s.strip(), ""
    return m.group("street").strip().rstrip(","), m.group("number").strip()


def _name(s: str) -> tuple[str, str]:
    """(last, first): "Muster, Max" -> (Muster, Max); "Max Muster" -> (Muster, Max)."""
    s = s.strip()
    if "," in s:
        last, _, first = s.partition(",")
        return last.strip(), first.strip()
    first, _, last = s.rpartition(" ")
    return (last.strip(), first.strip()) if first else (s, "")


def _postcode(s: str) -> tuple[str, str]:
    m = _POSTCODE.match(s.strip())
    if m is None:
        return "", s.strip()
    return m.group("code"), m.group("city").strip()


_NAMED = {"street": (_street, 0), "house_number": (_street, 1), "last_name": (_name, 0), "first_name": (_name, 1),
          "postal_code": (_postcode, 0), "city": (_postcode, 1)}


_MEMO_SIZE = 1 << 14  # distinct cells remembered per split (names and cities repeat; both parts read one cell)
_MEMOS: dict[Callable[[str], tuple[str, str]], dict[str, tuple[str, str]]] = {f: {} for f in (_street, _name, _postcode)}


def named_split(part: str) -> TextFn:
    """One part of a well-known composite value: street/house_number, last_name/first_name, postal_code/city."""
    split, index = _NAMED[part]
    memo = _MEMOS[split]  # shared by the two parts of a split: the second one reads the first one's result

    def get(s: str) -> str:
        parts = memo.get(s)
        if parts is None:
            parts = split(s)
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[s] = parts
        return parts[index]
    return get


def separator_split(separator: str, index: int) -> TextFn:
    """The ``index``-th (0-based; negative from the end) trimmed piece of the text split on ``separator``."""
    def split(s: str) -> str:
        parts = s.split(separator)
        try:
            return parts[index].strip()
        except IndexError:
            return ""
    return split


def regex_extract(pattern: str) -> TextFn:
    """The first group of ``pattern`` (or the whole match) searched in the text; no match gives ""."""
    rx = re.compile(pattern)
    group = 1 if rx.groups else 0

    def extract(s: str) -> str:
        m = rx.search(s)
        return (m.group(group) or "").strip() if m else ""
    return extract


def case(kind: str) -> TextFn:
    """upper, lower or title case."""
    fns: dict[str, TextFn] = {"upper": str.upper, "lower": str.lower, "title": _title}
    return fns[kind]


_PARTICLES = frozenset(("von", "van", "der", "de", "zu", "und"))
_AFTER_MARK = re.compile(r"([-'])(\w)")
_TITLED: dict[str, str] = {}


def _title(s: str) -> str:
    # str.title() would write "Müller-Lüdenscheidt" fine but "O'neil" and "Von Der" badly: keep particles.
    done = _TITLED.get(s)
    if done is not None:
        return done
    words = [w if w in _PARTICLES else w[:1].upper() + w[1:] for w in s.lower().split(" ")]
    out = _AFTER_MARK.sub(lambda m: m.group(1) + m.group(2).upper(), " ".join(words))
    if len(_TITLED) >= _MEMO_SIZE:
        _TITLED.clear()
    _TITLED[s] = out
    return out


def zero_pad(width: int) -> TextFn:
    """Digits-only text padded with leading zeros to ``width`` (a spreadsheet stored PLZ 01067 as 1067)."""
    return lambda s: s.zfill(width) if s.isdigit() else s


def chain(fns: list[TextFn]) -> TextFn | None:
    """The functions applied in order, or None when there are none (so the engine skips the call).

    An empty text stops the chain (an empty result means "no value").
    """
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        first, second = fns

        def both(s: str) -> str:
            if not s:
                return s
            s = first(s)
            return second(s) if s else s
        return both

    def run(s: str) -> str:
        for fn in fns:
            if not s:
                return s
            s = fn(s)
        return s
    return run
