from datetime import date
from decimal import Decimal

import pytest

from gateway.domain import findings as codes
from gateway.domain.model import Salutation
from gateway.mapping import transforms as t


@pytest.mark.parametrize("text, expected", [
    ("1.234,56", Decimal("1234.56")),
    ("1234,56", Decimal("1234.56")),
    ("1.234.567,89", Decimal("1234567.89")),
    ("-12,5", Decimal("-12.5")),
    ("+7", Decimal("7")),
    ("12,50-", Decimal("-12.50")),  # SAP writes the sign last
    ("EUR 12,50", Decimal("12.50")),
    ("12,50 €", Decimal("12.50")),
    ("€12,50", Decimal("12.50")),
    ("  89,90 ", Decimal("89.90")),
    ("1.234", Decimal("1234")),
    ("0,00", Decimal("0.00")),
])
def test_german_amounts(text: str, expected: Decimal) -> None:
    value = t.parse_decimal(text)
    assert value == expected
    assert str(value) == str(expected)  # the written precision is kept: no float detour


@pytest.mark.parametrize("text", ["1,2,3", "12.34.56", "12,3x", "1.23,45", "abc", "12,50 CHF", "-12,50-", ",5"])
def test_bad_amounts_are_refused_with_the_expected_notation(text: str) -> None:
    with pytest.raises(t.TransformError) as info:
        t.parse_decimal(text)
    assert info.value.code == codes.INVALID_AMOUNT
    assert f"'{text}' is not an amount" in info.value.client_message
    assert "1.234,56" in info.value.client_message


@pytest.mark.parametrize("decimal, thousands, text, expected", [
    (",", ".", "1.234", "1234"), (",", ".", "1234.567", None), (",", ".", "12.3456", None), (",", ".", ".123", None),
    (",", ".", "1.234.567,89", "1234567.89"), (",", ".", "12,", None), (",", ".", "\u0661\u0662,50", "12.50"),
    (",", ".", "1\u00b2", None), (",", ".", "007", "7"), (",", ".", "12.345,6789", "12345.6789"),
    (".", ",", "1.234", "1.234"), (".", ",", "1,234.56", "1234.56"), (".", ",", "1234,5", None),
    (",", " ", "1 234,56", "1234.56"), (",", " ", "1.234", None), (",", "", "1234,5", "1234.5"),
])
def test_amount_shapes_with_and_without_grouping(decimal: str, thousands: str, text: str, expected: str | None) -> None:
    # Unsigned plain amounts skip the regex; these are the cases where the two could part ways.
    parse = t.decimal_parser(decimal, thousands)
    if expected is None:
        with pytest.raises(t.TransformError):
            parse(text)
    else:
        value = parse(text)
        assert str(value) == expected and str(parse(text)) == expected  # the second from the memo


def test_a_decimal_point_in_comma_mode_gets_a_hint() -> None:
    with pytest.raises(t.TransformError, match="looks like a decimal point"):
        t.parse_decimal("12.50")


def test_empty_amount_is_none() -> None:
    assert t.parse_decimal("") is None
    assert t.parse_decimal("   ") is None


def test_point_notation_and_no_thousands() -> None:
    assert t.parse_decimal("1,234.56", decimal=".", thousands=",") == Decimal("1234.56")
    assert t.parse_decimal("1234.56", decimal=".", thousands="") == Decimal("1234.56")
    assert t.parse_decimal("1 234,56", decimal=",", thousands=" ") == Decimal("1234.56")
    assert t.parse_decimal("1\u00a0234,56", decimal=",", thousands=" ") == Decimal("1234.56")
    with pytest.raises(t.TransformError):
        t.parse_decimal("1.234,56", decimal=",", thousands="")


def test_repeated_values_come_from_the_cache_unchanged() -> None:
    parse = t.decimal_parser(",", ".")
    assert parse("5,00") == parse("5,00") == Decimal("5.00")
    with pytest.raises(t.TransformError):
        parse("5,0x")
    with pytest.raises(t.TransformError):  # errors are never cached as values
        parse("5,0x")


def test_decimal_notation_by_example() -> None:
    assert t.parse_decimal_format("1.234,56") == (",", ".")
    assert t.parse_decimal_format("1234,56") == (",", "")
    assert t.parse_decimal_format("1,234.56") == (".", ",")
    assert t.parse_decimal_format("1'234.56") == (".", "'")
    with pytest.raises(ValueError, match="not an amount notation"):
        t.parse_decimal_format("12,34")
    with pytest.raises(ValueError):
        t.parse_decimal_format("1,234,56")


def test_canonical_amount_needs_a_point() -> None:
    assert t.parse_canonical_decimal("12.50") == Decimal("12.50")
    with pytest.raises(t.TransformError, match="decimal point"):
        t.parse_canonical_decimal("12,50")


@pytest.mark.parametrize("text, expected", [
    ("14.03.1978", date(1978, 3, 14)),
    ("4.3.1978", date(1978, 3, 4)),
    (" 29.02.2024 ", date(2024, 2, 29)),
    ("2025-01-31", date(2025, 1, 31)),
])
def test_dates(text: str, expected: date) -> None:
    assert t.parse_date(text, ["%d.%m.%Y", "%Y-%m-%d"]) == expected


def test_impossible_date_names_the_expected_format() -> None:
    with pytest.raises(t.TransformError) as info:
        t.parse_date("31.02.2025", ["%d.%m.%Y"])
    assert info.value.code == codes.INVALID_DATE
    assert "'31.02.2025' is not a valid date" in info.value.client_message
    assert "DD.MM.YYYY" in info.value.client_message


@pytest.mark.parametrize("text", ["2025/01/31", "31.13", "heute", "31.12.25"])
def test_wrong_shape_dates(text: str) -> None:
    with pytest.raises(t.TransformError, match="is not a date in the form DD.MM.YYYY"):
        t.parse_date(text, ["%d.%m.%Y"])


def test_empty_and_zero_dates_are_none() -> None:
    assert t.parse_date("") is None
    assert t.parse_date("00.00.0000") is None
    assert t.parse_date("0000-00-00") is None


def test_two_digit_years_and_times_and_strptime_formats() -> None:
    assert t.parse_date("01.02.69", ["%d.%m.%y"]) == date(1969, 2, 1)
    assert t.parse_date("01.02.25", ["%d.%m.%y"]) == date(2025, 2, 1)
    assert t.parse_date("31.01.2025 00:00:00", ["%d.%m.%Y %H:%M:%S"]) == date(2025, 1, 31)
    assert t.parse_date("05 Mar 2025", ["%d %b %Y"]) == date(2025, 3, 5)
    with pytest.raises(t.TransformError):
        t.parse_date("31 Feb 2025", ["%d %b %Y"])


def test_describe_and_check_date_formats() -> None:
    assert t.describe_date_format("%d.%m.%Y") == "DD.MM.YYYY"
    t.check_date_format("%d.%m.%Y")
    with pytest.raises(ValueError):
        t.check_date_format("DD.MM.YYYY")
    with pytest.raises(ValueError):
        t.check_date_format("%m.%Y")


def test_canonical_date() -> None:
    assert t.parse_canonical_date("2025-01-31") == date(2025, 1, 31)
    with pytest.raises(t.TransformError, match="YYYY-MM-DD"):
        t.parse_canonical_date("31.01.2025")


@pytest.mark.parametrize("text, expected", [
    ("ja", True), ("Nein", False), ("yes", True), ("no", False), ("1", True), ("0", False),
    ("x", True), ("X", True), ("", None),
])
def test_booleans(text: str, expected: bool | None) -> None:
    assert t.parse_bool(text) is expected


def test_bad_boolean() -> None:
    with pytest.raises(t.TransformError) as info:
        t.parse_bool("vielleicht")
    assert info.value.code == codes.INVALID_VALUE


def test_enum_lists_allowed_values() -> None:
    parse = t.enum_parser(Salutation)
    assert parse("MR") is Salutation.MR
    with pytest.raises(t.TransformError, match="mr, ms, diverse, company"):
        parse("Herrn")


def test_labels_and_value_maps() -> None:
    assert t.parse_labels("vip; ratenzahlung,, b2b ") == ["vip", "ratenzahlung", "b2b"]
    exact = t.value_map({"Herr ": "mr", "Frau": "ms"})
    assert exact("Herr") == "mr"
    assert exact("herr") is None
    folded = t.value_map({"Herr": "mr"}, ignore_case=True)
    assert folded("HERR") == "mr"
