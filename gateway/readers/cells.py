"""Spreadsheet cell values as text, exactly as ``SpreadsheetReader`` words calamine's values.

The streaming readers see the raw cell (a serial number and its number format, an ISO date
string, a boolean) and must produce the same text that python-calamine's Python value gets from
``SpreadsheetReader._text``. So the rules here are calamine's: which number formats are dates
(``detect_custom_number_format`` and the built-in ids), how a serial becomes a date, a time of
day, a date-time or a duration (1900 and 1904 systems, Excel's 1900 leap-year bug for serials
below 60, milliseconds rounded half away from zero), and which ISO texts parse.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta

from gateway.readers.spreadsheet import MAX_SERIAL, number_text

OTHER, DATETIME, DURATION = 0, 1, 2
_BUILTIN = {"14": DATETIME, "15": DATETIME, "16": DATETIME, "17": DATETIME, "18": DATETIME, "19": DATETIME,
            "20": DATETIME, "21": DATETIME, "22": DATETIME, "45": DATETIME, "47": DATETIME, "46": DURATION}
# A number stored as its own shortest decimal (at most 15 digits with the sign and point in 16 characters,
# no exponent, no leading or trailing zero): number_text would give back the same text, so the float and
# Decimal round trip is skipped. Whole numbers qualify only when they are not date serials.
PLAIN_NUMBER = re.compile(r"0|-?(?:[1-9][0-9]{0,14}(?:\.[0-9]*[1-9])?|0\.[0-9]*[1-9])")
_MS_PER_DAY = 86_400_000.0
_EPOCH = datetime(1899, 12, 30)
_SERIAL_EPOCH = date(1899, 12, 30)
_ISO_DATETIME = re.compile(r"(\d{4})-(\d\d?)-(\d\d?)[Tt](\d\d?):(\d\d?):(\d\d?)(?:\.(\d+))?")
_ISO_DATE = re.compile(r"(\d{4})-(\d\d?)-(\d\d?)")
_ISO_TIME = re.compile(r"(\d\d?):(\d\d?)(?::(\d\d?)(?:\.(\d+))?)?")  # chrono: seconds optional
_ISO_DURATION = re.compile(r"PT(\d\d?)H(\d\d?)M(\d\d?)(?:\.(\d+))?S")


def builtin_kind(num_fmt_id: str) -> int:
    """Whether a built-in number format id (no ``numFmt`` of that id in the styles) is a date or a duration."""
    return _BUILTIN.get(num_fmt_id, OTHER)


def is_percent(num_fmt_id: str | None, code: str | None) -> bool:
    """Whether a number format shows its number as a percentage (built-in 9 and 10, or a ``%`` in the code's
    first section outside quotes, brackets and escapes): the cell holds 0.05 for 5 %."""
    if code is None:
        return num_fmt_id in ("9", "10")
    escaped = quoted = False
    brackets = 0
    for ch in code:
        if escaped:
            escaped = False
        elif ch in "_\\*":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "[":
            brackets += 1
        elif ch == "]":
            brackets = max(brackets - 1, 0)
        elif ch == ";":
            return False
        elif ch == "%" and not brackets:
            return True
    return False


def format_kind(code: str) -> int:
    """Whether a custom number format shows a date/time (d, m, y, h, s outside quotes and brackets) or a duration."""
    escaped = quoted = ap = hms = False
    brackets = 0
    prev = " "
    for ch in code:
        if escaped:
            escaped = False
        elif ch in "_\\*":
            escaped = True  # the next character is a literal (escape, width skip, fill), never a token
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == ";":
            return OTHER  # only the first section decides
        elif ch == "[":
            brackets += 1
        elif ch == "]" and brackets == 1 and hms:
            return DURATION  # [h], [mm], [ss]: elapsed time
        elif ch == "]":
            brackets = max(brackets - 1, 0)
        elif ch in "aA" and not ap and brackets == 0:
            ap = True
        elif ap and brackets == 0 and ch in "pm/PM":
            return DATETIME
        elif not ap and brackets == 0 and ch in "dmhysDMHYS":
            return DATETIME
        elif not (hms and ch.lower() == prev.lower()):
            hms = prev == "[" and ch in "mhsMHS"
        prev = ch
    return OTHER


def _round_half_away(x: float) -> int:
    if x < 0:
        return -_round_half_away(-x)
    whole = math.floor(x)
    return int(whole) + (1 if x - whole >= 0.5 else 0)


def serial_text(value: float, kind: int, is_1904: bool, decimal: str) -> str:
    """A number in a date or duration format: ISO date, time of day, date-time, or a duration like ``3 days, 12:00:00``."""
    try:
        if kind == DURATION:
            return str(timedelta(milliseconds=_round_half_away(value * _MS_PER_DAY)))
        days = value + 1462.0 if is_1904 else value
        if days < 60.0:
            days += 1.0  # Excel counts the 29th of February 1900, which never was
        moment = _EPOCH + timedelta(milliseconds=_round_half_away(days * _MS_PER_DAY))
    except (OverflowError, ValueError):
        return number_text(value, decimal)  # outside the years 1-9999: calamine hands over the number
    if value < 1.0:
        return moment.time().isoformat()
    if value.is_integer():
        return moment.date().isoformat()
    return datetime_text(moment)


def datetime_text(moment: datetime) -> str:
    """A date-time as ``SpreadsheetReader`` writes it: the date alone at midnight."""
    return moment.date().isoformat() if moment.time() == time(0) else moment.isoformat(sep=" ")


def number_cell_text(value: float, is_date_column: bool, decimal: str, is_1904: bool = False, shift: int = 0) -> str:
    """A plain number; in a column the mapping reads as a date, a whole serial becomes a date in the workbook's
    date system (1900, or 1904: the serial of a date is 1462 smaller, as a formatted date's is; an ODS null
    date other than 1899-12-30: ``shift``, its distance in days from that)."""
    extra = 1462 if is_1904 else shift
    if is_date_column and value.is_integer() and 0 < value <= MAX_SERIAL - extra and value + extra > 0:
        return (_SERIAL_EPOCH + timedelta(days=int(value) + extra)).isoformat()
    return number_text(value, decimal)


def _micro(fraction: str | None) -> int:
    return int((fraction or "0")[:9].ljust(9, "0")) // 1000


def iso_text(text: str) -> str:
    """An ISO date, date-time or time (XLSX ``t="d"``, ODS ``office:date-value``); unparsable text stays as is."""
    try:
        if "T" in text:
            if m := _ISO_DATETIME.fullmatch(text):
                y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
                moment = datetime(y, mo, d, h, mi, s, _micro(m.group(7)))
                return datetime_text(moment)
        elif ":" in text:
            if m := _ISO_TIME.fullmatch(text):
                h, mi, s = (int(g or 0) for g in m.groups()[:3])
                return time(h, mi, s, _micro(m.group(4))).isoformat()
        elif m := _ISO_DATE.fullmatch(text):
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        pass
    return text


def duration_text(text: str) -> str:
    """An ODS ``office:time-value`` (``PT14H30M00S``) as a time of day; longer durations stay as written."""
    if m := _ISO_DURATION.fullmatch(text):
        try:
            return time(int(m.group(1)), int(m.group(2)), int(m.group(3)), _micro(m.group(4))).isoformat()
        except ValueError:
            pass
    return text
