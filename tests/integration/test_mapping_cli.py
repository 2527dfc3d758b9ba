"""``gateway mapping check|preview|suggest`` as an integrator runs them (in process, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.entrypoints.cli import main
from gateway.mapping import parse_mapping
from tests.conftest import write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}",
                        clients={"fitnessplus": {"name": "Fitness Plus", "default_partner": "demo-agency"}})
    shutil.copy(FIXTURES / "fitnessplus" / "mapping.yaml", tmp_path / "mappings" / "fitnessplus.yaml")
    return path


def test_check_ok(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "mapping", "check", "--client", "fitnessplus"]) == 0
    assert "ok:" in capsys.readouterr().out


def test_check_names_file_line_key(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    text = (FIXTURES / "fitnessplus" / "mapping.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("split: street}", "split: strasse}"), encoding="utf-8")
    assert main(["mapping", "check", "--file", str(broken)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "split: street}" in s)
    assert f"{broken}:{line}: at 'fields.debtor.street.split'" in err and "expected one of street" in err


def test_preview_table_and_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(FIXTURES / "fitnessplus" / "input.csv")
    assert main(["--config", str(config), "mapping", "preview", src, "--client", "fitnessplus"]) == 0
    out = capsys.readouterr().out
    assert "FP-2025-005" in out and "invalid_amount" in out and "column 'Forderung'" in out and "row 6" in out
    assert main(["--config", str(config), "mapping", "preview", src, "--client", "fitnessplus", "--json",
                 "--limit", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["truncated"] is True and len(doc["rows"]) == 2 and sum(doc["counts"].values()) == 7
    assert doc["rows"][0]["claim"]["debtor"]["addresses"][0]["city"] == "Köln"
    assert doc["columns"]["principal_amount"] == "Forderung"


def test_preview_of_an_unusable_file_exits_3(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert main(["--config", str(config), "mapping", "preview", str(empty), "--client", "fitnessplus"]) == 3
    assert "empty" in capsys.readouterr().err


def test_suggest_prints_a_draft_that_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mapping", "suggest", str(FIXTURES / "fitnessplus" / "input.csv"), "--client", "fp"]) == 0
    draft = capsys.readouterr().out
    spec = parse_mapping(draft, file="draft.yaml")
    assert spec.client == "fp" and spec.format.encoding == "windows-1252"
    assert '#   "Status": text' in draft  # what it could not place is said, as a comment
    path = tmp_path / "draft.yaml"
    path.write_text(draft, encoding="utf-8")
    assert main(["mapping", "check", "--file", str(path)]) == 0


def test_suggest_with_a_layout_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = FIXTURES / "onboarding"
    assert main(["mapping", "suggest", str(corpus / "legacy.txt"), "--layout",
                 str(corpus / "legacy_satzbeschreibung.txt"), "--client", "legacy"]) == 0
    spec = parse_mapping(capsys.readouterr().out, file="draft.yaml")
    assert spec.fields["principal_amount"].column == "Forderung" and spec.format.codec == "iso8859-1"
