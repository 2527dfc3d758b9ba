from pathlib import Path
from textwrap import dedent

import pytest

from gateway.errors import ConfigError
from gateway.mapping import FieldSpec, load_mapping, parse_mapping

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
client: demo
fields:
  creditor_reference: Rechnungsnr
  principal_amount: Betrag
"""


def parse(text: str) -> object:
    return parse_mapping(dedent(text), file="mappings/demo.yaml")


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def test_the_demo_mapping_loads() -> None:
    spec = load_mapping(REPO / "mappings" / "demo.yaml")
    assert spec.client == "demo"
    assert spec.format.codec == "cp1252"
    assert spec.format.delimiter == ";"
    assert spec.format.thousands == "."
    assert spec.fields["principal_amount"] == FieldSpec(column="Betrag")
    assert spec.fields["debtor.salutation"].map == {"Herr": "mr", "Frau": "ms", "Divers": "diverse",
                                                    "Firma": "company"}
    assert spec.policy.hold_all is False


def test_defaults_are_german() -> None:
    spec = parse_mapping(MINIMAL, file="m.yaml")
    assert (spec.format.type, spec.format.encoding, spec.format.delimiter) == ("csv", "utf-8", ";")
    assert (spec.format.decimal_separator, spec.format.thousands) == (",", ".")
    assert spec.format.date_formats == ["%d.%m.%Y", "%Y-%m-%d"]
    assert spec.version == 1


def test_wrong_type_names_file_line_key_and_expectation() -> None:
    err = error_of("""\
        client: demo
        fields:
          creditor_reference: Rechnungsnr
          principal_amount:
            column: [Betrag, Summe]
        """)
    assert str(err) == "mappings/demo.yaml:5: at 'fields.principal_amount.column': expected a string, got a list"
    assert (err.file, err.line, err.key) == ("mappings/demo.yaml", 5, "fields.principal_amount.column")


def test_unknown_target_lists_the_closest_valid_ones() -> None:
    err = error_of(MINIMAL + "  debtor.postcode: PLZ\n")
    assert err.line == 5
    assert err.key == "fields.debtor.postcode"
    assert "did you mean debtor.postal_code" in str(err)


def test_unknown_field_option_suggests_the_right_key() -> None:
    err = error_of(MINIMAL + "  debtor.city:\n    colum: Ort\n")
    assert err.line == 6
    assert err.key == "fields.debtor.city.colum"
    assert "did you mean 'column'" in str(err)


def test_unknown_top_level_key() -> None:
    err = error_of(MINIMAL + "polcy:\n  hold_all: true\n")
    assert (err.line, err.key) == (5, "polcy")
    assert "did you mean 'policy'" in str(err)


def test_required_targets_must_be_mapped() -> None:
    err = error_of("client: demo\nfields:\n  creditor_reference: Rechnungsnr\n")
    assert "must fill 'principal_amount'" in str(err)
    assert err.line == 2


def test_map_values_must_be_canonical() -> None:
    err = error_of(MINIMAL + "  debtor.salutation:\n    column: Anrede\n    map:\n      Herr: Mister\n")
    assert err.key == "fields.debtor.salutation.map.Herr"
    assert err.line == 8
    assert "'Mister' is not one of: mr, ms, diverse, company" in str(err)


def test_const_and_default_are_canonical() -> None:
    err = error_of(MINIMAL + "  fees.dunning: {const: '5,00'}\n")
    assert err.key == "fields.fees.dunning.const"
    assert "decimal point" in str(err)
    err = error_of(MINIMAL + "  due_date: {column: Faellig, default: 31.01.2025}\n")
    assert err.key == "fields.due_date.default"
    assert "YYYY-MM-DD" in str(err)
    spec = parse_mapping(MINIMAL + "  fees.dunning: {const: 5.00}\n  due_date: {column: F, default: 2025-01-31}\n",
                         file="m.yaml")
    assert spec.fields["fees.dunning"].const == "5.00"
    assert spec.fields["due_date"].default == "2025-01-31"


def test_values_are_text_not_yaml_booleans_or_numbers() -> None:
    spec = parse_mapping(MINIMAL + "  debtor.country:\n    column: No\n    map: {NO: NO, Norwegen: NO, yes: DE}\n"
                                   "  debtor.postal_code: 01067\n", file="m.yaml")
    assert spec.fields["debtor.country"].column == "No"
    assert spec.fields["debtor.country"].map == {"NO": "NO", "Norwegen": "NO", "yes": "DE"}
    assert spec.fields["debtor.postal_code"].column == "01067"


def test_exactly_one_source() -> None:
    err = error_of(MINIMAL + "  currency: {column: Waehrung, const: EUR}\n")
    assert err.key == "fields.currency"
    assert "exactly one of column, columns or const; got column and const" in str(err)
    err = error_of(MINIMAL + "  currency: {default: EUR}\n")
    assert "got none" in str(err)


def test_format_errors() -> None:
    err = error_of(MINIMAL + "format:\n  encoding: utf-16\n")
    assert (err.key, err.line) == ("format.encoding", 6)
    assert "windows-1252" in str(err)
    err = error_of(MINIMAL + "format:\n  type: excel\n")
    assert err.key == "format.type"
    assert "expected one of: csv, xlsx" in str(err)
    err = error_of(MINIMAL + "format:\n  header_row: zwei\n")
    assert str(err).endswith("at 'format.header_row': expected an integer, got a string")
    err = error_of(MINIMAL + "format:\n  date_formats: ['%d.%m.%Y', 'DD.MM.YYYY']\n")
    assert err.key == "format.date_formats.1"
    err = error_of(MINIMAL + "format:\n  delimiter: ';;'\n")
    assert "expected one character" in str(err)
    err = error_of(MINIMAL + "format:\n  decimal_separator: ','\n  thousands_separator: ','\n")
    assert err.key == "format.thousands_separator"


def test_delimiter_names_and_encoding_aliases() -> None:
    spec = parse_mapping(MINIMAL + "format:\n  delimiter: tab\n  encoding: Windows-1252\n", file="m.yaml")
    assert spec.format.delimiter == "\t"
    assert spec.format.codec == "cp1252"
    spec = parse_mapping(MINIMAL + "format:\n  encoding: latin-1\n", file="m.yaml")
    assert spec.format.codec == "iso8859-1"


def test_field_format_only_for_dates_and_amounts() -> None:
    err = error_of(MINIMAL + "  debtor.city: {column: Ort, format: '%d'}\n")
    assert "date and amount fields only" in str(err)
    err = error_of(MINIMAL + "  due_date: {column: F, format: '%d/%m'}\n")
    assert err.key == "fields.due_date.format"
    spec = parse_mapping(MINIMAL + "  due_date: {column: F, format: ['%d/%m/%Y', '%Y%m%d']}\n"
                                   "  fees.other: {column: G, format: '1,234.56'}\n", file="m.yaml")
    assert spec.fields["due_date"].format == ["%d/%m/%Y", "%Y%m%d"]


def test_yaml_syntax_error_has_a_line() -> None:
    err = error_of(MINIMAL + "  debtor.city: [Ort\n")
    assert err.file == "mappings/demo.yaml"
    assert err.line is not None and err.line >= 5
    assert "not valid YAML" in str(err)


def test_duplicate_keys_are_refused() -> None:
    err = error_of(MINIMAL + "  principal_amount: Summe\n")
    assert (err.key, err.line) == ("fields.principal_amount", 5)
    assert "twice" in str(err)


def test_map_keys_that_collide_ignoring_case() -> None:
    err = error_of(MINIMAL + "  debtor.salutation:\n    column: A\n    map_ignore_case: true\n"
                             "    map: {Herr: mr, HERR: mr}\n")
    assert err.key == "fields.debtor.salutation.map.HERR"


def test_client_version_and_empty_files() -> None:
    assert "client id" in str(error_of("fields: {}\n"))
    assert "expected 1" in str(error_of(MINIMAL + "version: 2\n"))
    assert "empty" in str(error_of(""))
    assert "expected a mapping" in str(error_of("- a\n- b\n"))
    err = error_of("client: demo\nfields:\n  creditor_reference: R\n  principal_amount: [Betrag]\n")
    assert "expected a column name or a mapping" in str(err)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping file not found"):
        load_mapping(tmp_path / "nobody.yaml")


def test_policy() -> None:
    spec = parse_mapping(MINIMAL + "policy:\n  hold_all: true\n  partner: inkasso-nord\n", file="m.yaml")
    assert spec.policy.hold_all is True
    assert spec.policy.partner == "inkasso-nord"
    err = error_of(MINIMAL + "policy:\n  hold_all: maybe\n")
    assert err.key == "policy.hold_all"
    assert "expected true or false" in str(err)
