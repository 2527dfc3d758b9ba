"""schemas/mapping.schema.json agrees with the loader: generated from the structs, and tried on real files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.errors import ConfigError
from gateway.mapping import load_mapping, parse_mapping
from gateway.mapping.schema import mapping_json_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "mapping.schema.json"
MAPPINGS = sorted([*REPO.glob("mappings/*.yaml"), *REPO.glob("tests/fixtures/*/mapping.yaml")])


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_the_generated_one() -> None:
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == mapping_json_schema(), (
        "regenerate: python -m gateway.mapping.schema > schemas/mapping.schema.json")


def test_there_are_mappings_to_check() -> None:
    assert len(MAPPINGS) >= 3


@pytest.mark.parametrize("path", MAPPINGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_mapping_passes_both(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    load_mapping(path)
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
    assert errors == []


BASE = "client: x\nfields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n"


@pytest.mark.parametrize("extra", [
    "  debtor.town: Ort\n",                                    # not a canonical field
    "  memo: {column: M, colour: red}\n",                       # unknown key
    "  memo: {column: M, split: town}\n",                       # unknown split
    "  memo: {column: M, case: loud}\n",                        # unknown case
    "  debtor.country: {column: L, map: planets}\n",           # unknown built-in map
    "  memo: {column: M, when: {column: S, equal: a}}\n",      # unknown condition operator
    "  memo: {column: M, when: {equals: a}}\n",                 # condition without a column
])
def test_broken_mappings_fail_both(extra: str, validator: jsonschema.Draft202012Validator) -> None:
    text = BASE + extra
    with pytest.raises(ConfigError):
        parse_mapping(text)
    assert list(validator.iter_errors(yaml.safe_load(text)))


@pytest.mark.parametrize("extra", ["group: {by: Kd, mode: debtors}\n", "policy: {hold_when: {column: S, empty: maybe}}\n",
                                   "version: 2\n", "format: {type: pdf}\n"])
def test_broken_top_level_fails_both(extra: str, validator: jsonschema.Draft202012Validator) -> None:
    text = BASE + extra
    with pytest.raises(ConfigError):
        parse_mapping(text)
    assert list(validator.iter_errors(yaml.safe_load(text)))
