"""Pure value parsers for client files: German-aware amounts and dates, booleans, value maps.

Each ``*_parser`` factory compiles its options once and returns a fast ``str -> value`` function;
the engine builds those per field at compile time. A value that cannot be parsed raises
``TransformError`` carrying a stable finding code and a message a client's clerk understands.
No I/O here.
"""

from __future__ import annotations

import enum
import re
import weakref
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from gateway.domain import findings as codes

DEFAULT_DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d")


class TransformError(ValueError):
    """A cell value that cannot become its canonical type; ``code`` is the finding code.

    ``message`` names no value (it is stored and may be logged); ``client_message`` quotes the
    client's own value in front of it, for the client's ack.
    """

    def __init__(self, message: str, code: str = codes.INVALID_VALUE, *, value: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code
        shown = value if value is None or len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."
        self.client_message = message if shown is None else f"'{shown}' {message}"


SHOWN_CHARS = 100  # of a rejected value quoted back in the client's ack


_CACHE_SIZE = 1 << 16  # distinct values remembered per parser: dates and amounts repeat a lot in a file
V = TypeVar("V")


def _remember(cache: dict[str, V], text: str, value: V, size: int = _CACHE_SIZE) -> None:
    if len(cache) >= size:
        cache.clear()
    cache[text] = value


# Amounts are far more often all different than dates: a large memo of them costs more (a table and
# objects that no longer fit the CPU's caches) than it saves; a small one still keeps fees and
# instalments that repeat.
_AMOUNT_CACHE_SIZE = 1 << 9


# parser -> its memo, for callers that look a repeated value up themselves before calling the parser
# (the engine's generated row function: a dict lookup instead of a call per cell).
_CACHES: weakref.WeakKeyDictionary[Callable[[str], object], dict[str, Any]] = weakref.WeakKeyDictionary()


def parse_cache(parse: Callable[[str], object]) -> dict[str, Any] | None:
    """The memo of a parser made here (cell text -> value; never holds None), if it keeps one."""
    return _CACHES.get(parse)


# ---------------------------------------------------------------- amounts

_CURRENCY = re.compile(r"^(?:EUR|€|Euro)\s*|\s*(?:EUR|€|Euro)$", re.IGNORECASE)
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " "})


def decimal_example(decimal: str, thousands: str) -> str:
    """How an amount looks in this notation, for messages ("1.234,56")."""
    return f"1{thousands}234{decimal}56"


@lru_cache(maxsize=64)
def decimal_parser(decimal: str = ",", thousands: str = ".") -> Callable[[str], Decimal | None]:
    """A parser for amounts in one notation: ``decimal`` separator, ``thousands`` ("" for none)."""
    if decimal not in ",." or len(decimal) != 1 or thousands == decimal or len(thousands) > 1:
        raise ValueError(f"unusable amount notation: decimal {decimal!r}, thousands {thousands!r}")
    d, t = re.escape(decimal), re.escape(thousands)
    grouped = rf"\d{{1,3}}(?:{t}\d{{3}})+|" if thousands else ""
    shape = re.compile(rf"^([-+]?)({grouped}\d+)(?:{d}(\d+))?(-?)$")
    example = decimal_example(decimal, thousands)
    hint = "a decimal point" if decimal == "," else "a decimal comma"
    other = "." if decimal == "," else ","

    cache: dict[str, Decimal] = {}

    def parse(text: str) -> Decimal | None:
        hit = cache.get(text)
        if hit is not None:
            return hit
        s = text.strip()
        if not s:
            return None
        # Most amounts are unsigned ASCII digits, grouped or not, with or without cents: what the regex
        # makes of them, without the regex (anything else, a sign or a currency included, takes it).
        whole, point, frac = s.partition(decimal)
        digits = whole.replace(thousands, "") if thousands else whole
        if digits.isascii() and digits.isdigit() and (not point or (frac.isascii() and frac.isdigit())):
            groups = len(whole) - len(digits)  # thousands separators: 1-3 digits, then groups of 3
            if not groups or (1 <= len(whole) - 4 * groups <= 3 and whole[-4::-4] == thousands * groups):
                value = Decimal(f"{digits}.{frac}" if frac else digits)
                if len(cache) >= _AMOUNT_CACHE_SIZE:
                    cache.clear()
                cache[text] = value
                return value
        m = shape.match(s)
        if m is None:
            s = _CURRENCY.sub("", s.translate(_SPACES)).strip()
            m = shape.match(s)
            if m is None:
                why = ""
                if re.fullmatch(rf"[-+]?\d+{re.escape(other)}\d{{1,2}}", s):
                    why = f" (it looks like {hint}; this mapping expects '{decimal}' before the cents)"
                raise TransformError(f"is not an amount: expected a number like {example}{why}",
                                     codes.INVALID_AMOUNT, value=text.strip())
        sign, whole, frac, trailing_minus = m.groups()
        if sign and trailing_minus:
            raise TransformError(f"is not an amount: it has two signs; expected a number like {example}",
                                 codes.INVALID_AMOUNT, value=text.strip())
        if thousands:
            whole = whole.replace(thousands, "")
        value = Decimal(f"{whole}.{frac}" if frac else whole)
        if sign == "-" or trailing_minus:
            value = -value
        _remember(cache, text, value, _AMOUNT_CACHE_SIZE)
        return value

    _CACHES[parse] = cache
    return parse


_PERCENT = re.compile(r"[\s\u00a0\u202f]*%$")


@lru_cache(maxsize=16)
def rate_parser(decimal: str = ",", thousands: str = ".") -> Callable[[str], Decimal | None]:
    """An interest rate (percent per year) as written, with or without its percent sign: "5", "5,25 %"
    (a CSV saved from a spreadsheet writes a percentage cell as shown)."""
    amount = decimal_parser(decimal, thousands)

    def parse(text: str) -> Decimal | None:
        return amount(_PERCENT.sub("", text) if text.endswith("%") else text)

    return parse


def parse_decimal(text: str, decimal: str = ",", thousands: str = ".") -> Decimal | None:
    """An amount as written by a client ("1.234,56", "EUR 12,50", "12,50-"); empty gives None."""
    return decimal_parser(decimal, thousands)(text)


_CANONICAL_DECIMAL = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


@lru_cache(maxsize=8)
def implied_decimal_parser(places: int) -> Callable[[str], Decimal | None]:
    """Amounts written without a separator in minor units: places=2 reads "1250" as 12.50."""
    shape = re.compile(r"^([-+]?)(\d+)(-?)$")
    cache: dict[str, Decimal] = {}

    def parse(text: str) -> Decimal | None:
        hit = cache.get(text)
        if hit is not None:
            return hit
        s = text.strip()
        if not s:
            return None
        m = shape.match(s)
        if m is None:
            raise TransformError(f"is not an amount in minor units: expected digits only, "
                                 f"e.g. 123456 for {Decimal(123456).scaleb(-places)}", codes.INVALID_AMOUNT, value=s)
        value = Decimal(m.group(2)).scaleb(-places)
        value = -value if m.group(1) == "-" or m.group(3) else value
        _remember(cache, text, value, _AMOUNT_CACHE_SIZE)
        return value

    _CACHES[parse] = cache
    return parse


def parse_canonical_decimal(text: str) -> Decimal:
    """An amount written in a mapping file: plain digits with a decimal point ("12.50")."""
    s = text.strip()
    if not _CANONICAL_DECIMAL.match(s):
        raise TransformError("is not an amount: write it with a decimal point, e.g. 12.50",
                             codes.INVALID_AMOUNT, value=s)
    return Decimal(s)


def parse_decimal_format(example: str) -> tuple[str, str]:
    """(decimal, thousands) from a notation written by example: "1.234,56", "1234.56", "1 234,56"."""
    m = re.fullmatch(r"1([.,' ]?)234([.,])56", example.strip())
    if m is None or m.group(1) == m.group(2):
        raise ValueError(f"'{example}' is not an amount notation: write 1234.56 the way the file does, "
                         "e.g. 1.234,56 or 1234,56 or 1,234.56")
    return m.group(2), m.group(1)


# ---------------------------------------------------------------- dates

_DIRECTIVES = {"d": (r"(\d{1,2})", "DD"), "m": (r"(\d{1,2})", "MM"), "Y": (r"(\d{4})", "YYYY"),
               "y": (r"(\d{2})", "YY"), "H": (r"\d{1,2}", "hh"), "M": (r"\d{2}", "mm"), "S": (r"\d{2}", "ss")}
_ZERO_DATE = re.compile(r"^[0.\-/: ]+$")


def describe_date_format(fmt: str) -> str:
    """A strftime format the way people write it: %d.%m.%Y -> DD.MM.YYYY."""
    return re.sub(r"%(.)", lambda m: _DIRECTIVES.get(m.group(1), (None, m.group(0)))[1], fmt)


def _fast_date(fmt: str, pivot: int = 69) -> Callable[[str], date | None] | None:
    """A regex parser for formats made of %d %m %Y %y (and ignored %H:%M:%S); None for others.

    Two-digit years below ``pivot`` are 20xx, the others 19xx (69 is strptime's own pivot).
    """
    pattern, order = [], []
    for literal, directive in re.findall(r"([^%]*)(?:%(.))?", fmt):
        pattern.append(re.escape(literal))
        if directive:
            if directive not in _DIRECTIVES:
                return None
            pattern.append(_DIRECTIVES[directive][0])
            if directive in "dmYy":
                order.append(directive)
    if sorted(order) not in (["Y", "d", "m"], ["d", "m", "y"]):
        return None
    shape = re.compile("^" + "".join(pattern) + "$")
    iy, im, id_ = (order.index("Y") if "Y" in order else order.index("y")), order.index("m"), order.index("d")
    two_digit = "y" in order

    def parse(s: str) -> date | None:
        m = shape.match(s)
        if m is None:
            return None
        g = m.groups()
        year = int(g[iy])
        if two_digit:
            year += 1900 if year >= pivot else 2000
        return date(year, int(g[im]), int(g[id_]))

    return parse


def _slow_date(fmt: str) -> Callable[[str], date | None]:
    def parse(s: str) -> date | None:
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError as exc:
            if "unconverted data" in str(exc) or "does not match" in str(exc):
                return None
            raise
    return parse


@lru_cache(maxsize=64)
def date_parser(formats: tuple[str, ...] = DEFAULT_DATE_FORMATS, pivot: int = 69) -> Callable[[str], date | None]:
    """A parser trying each strftime format in order; "00.00.0000" and empty give None."""
    if not formats:
        raise ValueError("at least one date format is needed")
    tries = [_fast_date(f, pivot) or _slow_date(f) for f in formats]
    expected = " or ".join(describe_date_format(f) for f in formats)

    cache: dict[str, date] = {}

    def parse(text: str) -> date | None:
        hit = cache.get(text)
        if hit is not None:
            return hit
        s = text.strip()
        if not s:
            return None
        for attempt in tries:
            try:
                value = attempt(s)
            except ValueError as exc:  # right shape, impossible day: 31.02.2025
                if _ZERO_DATE.match(s):  # 00.00.0000: how many exports write "no date"
                    return None
                raise TransformError(f"is not a valid date ({_reason(exc)}); expected {expected}",
                                     codes.INVALID_DATE, value=s) from None
            if value is not None:
                _remember(cache, text, value)
                return value
        if _ZERO_DATE.match(s):
            return None
        raise TransformError(f"is not a date in the form {expected}", codes.INVALID_DATE, value=s)

    _CACHES[parse] = cache
    return parse


def _reason(exc: ValueError) -> str:
    """Why a date is impossible, without the text that was parsed (strptime may quote it)."""
    text = str(exc)
    return text if text in _DATE_REASONS else "no such day"


_DATE_REASONS = frozenset({"day is out of range for month", "month must be in 1..12", "year 0 is out of range"})


def parse_date(text: str, formats: tuple[str, ...] | list[str] = DEFAULT_DATE_FORMATS) -> date | None:
    """A date in one of ``formats`` (strftime; %d also takes one digit, so D.M.YYYY works)."""
    return date_parser(tuple(formats))(text)


def parse_canonical_date(text: str) -> date:
    """A date written in a mapping file: ISO 8601, 2025-01-31."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise TransformError("is not a date: write it as YYYY-MM-DD", codes.INVALID_DATE,
                             value=text.strip()) from None


def check_date_format(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` is a strftime format that round-trips a date."""
    if "%" not in fmt:
        raise ValueError(f"'{fmt}' is not a date format: use strftime codes like %d.%m.%Y")
    sample = date(2024, 12, 31)
    try:
        back = datetime.strptime(sample.strftime(fmt), fmt).date()
    except ValueError as exc:
        raise ValueError(f"'{fmt}' is not a usable date format: {exc}") from None
    if back != sample:
        raise ValueError(f"'{fmt}' is not a date format with day, month and year")


# ---------------------------------------------------------------- booleans, enums, labels, maps

_TRUE = frozenset({"ja", "j", "yes", "y", "1", "x", "true", "wahr", "t"})
_FALSE = frozenset({"nein", "n", "no", "0", "false", "falsch", "f", "-"})


def parse_bool(text: str) -> bool | None:
    """ja/nein, yes/no, 1/0, x (ticked) and true/false; empty gives None."""
    s = text.strip().lower()
    if not s:
        return None
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise TransformError("is not yes or no: expected ja/nein, yes/no, 1/0 or x", value=text.strip())


def enum_parser(kind: type[enum.Enum]) -> Callable[[str], enum.Enum]:
    """Canonical enum values, case-insensitive; anything else names the allowed values."""
    table = {str(m.value).lower(): m for m in kind}
    allowed = ", ".join(str(m.value) for m in kind)

    def parse(text: str) -> enum.Enum:
        member = table.get(text.strip().lower())
        if member is None:
            raise TransformError(f"is not one of: {allowed}", value=text.strip())
        return member

    return parse


_LABEL_SPLIT = re.compile(r"[,;]")


def parse_labels(text: str) -> list[str]:
    """Labels split on ',' or ';', trimmed, empty ones dropped."""
    return [p for p in (part.strip() for part in _LABEL_SPLIT.split(text)) if p]


def value_table(table: Mapping[str, V], *, ignore_case: bool = False) -> dict[str, V]:
    """``table`` keyed the way ``value_map`` looks values up: trimmed, case-folded with ``ignore_case``."""
    if ignore_case:
        return {k.strip().casefold(): v for k, v in table.items()}
    return {k.strip(): v for k, v in table.items()}


def value_map(table: Mapping[str, V], *, ignore_case: bool = False) -> Callable[[str], V | None]:
    """A lookup of trimmed client values; None for a value not in the table."""
    keyed = value_table(table, ignore_case=ignore_case)
    if ignore_case:
        return lambda s: keyed.get(s.casefold())
    return keyed.get
