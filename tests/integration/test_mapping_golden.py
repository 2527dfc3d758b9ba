"""Golden files: every client in tests/fixtures/<client>/ with a mapping.yaml maps and ingests as recorded.

Each fixture holds ``mapping.yaml``, one or more ``input.*`` files, and for each input the canonical
claims and findings (``<input>.expected.json``, from ``preview``) and the ack ingest writes
(``<input>.expected.ack.csv``). A change in output is a visible diff; after a deliberate change,
regenerate with ``GATEWAY_UPDATE_GOLDEN=1 pytest tests/integration/test_mapping_golden.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

import msgspec
import pytest

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.mapping.spec import load_mapping
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.services.preview import preview_file
from tests.conftest import write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UPDATE = os.environ.get("GATEWAY_UPDATE_GOLDEN") == "1"
TODAY = date(2026, 1, 15)  # the day the canonical JSON is validated against (ages, dates in the future)


def golden_cases() -> list[tuple[str, str]]:
    """(client, input file name) for every fixture client with a mapping."""
    return [(d.name, f.name) for d in sorted(FIXTURES.iterdir()) if (d / "mapping.yaml").is_file()
            for f in sorted(d.glob("input*")) if ".expected." not in f.name]


CASES = golden_cases()


def _compare(actual: str, expected_file: Path) -> None:
    if UPDATE or not expected_file.exists():
        expected_file.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{expected_file} did not exist and was written: review it and run again")
    assert actual == expected_file.read_text(encoding="utf-8"), f"output differs from {expected_file}"


def test_every_format_has_two_golden_clients() -> None:
    by_type: dict[str, set[str]] = {}
    for client, _ in CASES:
        by_type.setdefault(load_mapping(FIXTURES / client / "mapping.yaml").format.type, set()).add(client)
    assert all(len(by_type.get(kind, ())) >= 2 for kind in ("csv", "xlsx", "ods", "xml", "fixed_width")), by_type


@pytest.mark.parametrize(("client", "input_name"), CASES)
def test_canonical_json(client: str, input_name: str) -> None:
    folder = FIXTURES / client
    spec = load_mapping(folder / "mapping.yaml")
    result = preview_file(folder / input_name, spec, client, today=TODAY)
    doc = {"columns": result.columns, "counts": result.counts, "rows": result.rows}
    text = json.dumps(json.loads(msgspec.json.encode(doc)), indent=2, ensure_ascii=False) + "\n"
    _compare(text, folder / f"{input_name}.expected.json")


@pytest.mark.parametrize(("client", "input_name"), CASES)
def test_ingest_ack(client: str, input_name: str, tmp_path: Path, db_url: str) -> None:
    folder = FIXTURES / client
    partners = {p: {"adapter": "directory", "certificate": f"var/keys/partners/{p}.crt",
                    "options": {"path": f"var/partners/{p}"}} for p in ("demo-agency", "intl-agency")}
    config = write_config(tmp_path, db_url, clients={client: {"name": client, "default_partner": "demo-agency"}},
                          partners=partners)
    shutil.copy(folder / "mapping.yaml", tmp_path / "mappings" / f"{client}.yaml")
    init_keys(load_config(config))
    app = build_app(config, migrate=True)
    try:
        ack = tmp_path / "ack" / f"{input_name}.ack.csv"
        result = ingest_file(app, folder / input_name, client, ack_path=ack)
    finally:
        app.close()
    assert result.status in ("completed", "completed_with_errors"), result.error
    _compare(ack.read_text(encoding="utf-8"), folder / f"{input_name}.expected.ack.csv")
