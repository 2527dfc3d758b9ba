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
    assert main(["mapping", "suggest", str(corpus / "verwaltung.ods"), "--client", "v", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # the draft and what it is unsure of, for scripts
    assert parse_mapping(doc["text"], file="draft.yaml").client == "v"
    assert set(doc["unsure"]) == {"debtor.kind", "debtor.company"} and doc["fields"]["debtor.city"] == {"column": "Ort"}


def test_the_integrator_loop_for_a_client_not_configured_yet(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # no keys were made and no database exists: the loop needs neither, and creates neither
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")
    src = str(FIXTURES / "onboarding" / "praxis.csv")
    assert main(["--config", str(config), "mapping", "suggest", src, "--client", "acme"]) == 0
    (tmp_path / "mappings" / "acme.yaml").write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["--config", str(config), "mapping", "check", "--client", "acme"]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["--config", str(config), "mapping", "preview", src, "--client", "acme"]) == 0
    assert "8 claims" in capsys.readouterr().out
    assert main(["--config", str(config), "mapping", "preview", src, "--client", "acme", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = doc["rows"][0]
    # every canonical value is there, the model's defaults marked as such
    assert row["claim"]["currency"] == "EUR" and row["claim"]["debtor"]["addresses"][0]["country"] == "DE"
    assert {"currency", "debtor.kind", "debtor.addresses[0].country"} <= set(row["defaults"])
    assert "principal_amount" not in row["defaults"]
    assert main(["--config", str(config), "ingest", src, "--client", "acme", "--dry-run", "--json"]) == 0
    out, err = capsys.readouterr()
    run = json.loads(out)
    assert run["dry_run"] is True and run["rows"] == 8 and run["submission"] is None and "not configured" in err
    assert not (tmp_path / "gw.db").exists() and not (tmp_path / "var" / "keys").exists()
    # installed with the client in one command; the draft was checked first
    assert main(["--config", str(config), "clients", "add", "acme", "--name", "Acme",
                 "--mapping", str(tmp_path / "mappings" / "acme.yaml")]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "clients", "show", "acme", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mapping"] == "acme"


def test_clients_add_installs_a_checked_mapping_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")
    draft = tmp_path / "draft.yaml"
    draft.write_text((FIXTURES / "fitnessplus" / "mapping.yaml").read_text(encoding="utf-8")
                     .replace("client: fitnessplus", "client: gym"), encoding="utf-8")
    assert main(["--config", str(config), "clients", "add", "gym", "--name", "Gym", "--mapping", str(draft)]) == 0
    assert "installed" in capsys.readouterr().out
    assert (tmp_path / "mappings" / "gym.yaml").read_bytes() == draft.read_bytes()
    broken = tmp_path / "broken.yaml"
    broken.write_text(draft.read_text(encoding="utf-8").replace("client: gym", "client: gym2")
                      .replace("split: street}", "split: strasse}"), encoding="utf-8")
    assert main(["--config", str(config), "clients", "add", "gym2", "--name", "Gym 2", "--mapping", str(broken)]) == 1
    assert "fields.debtor.street.split" in capsys.readouterr().err
    assert not (tmp_path / "mappings" / "gym2.yaml").exists()
    assert "gym2" not in (tmp_path / "gateway.yaml").read_text(encoding="utf-8")


def test_errors_go_to_stderr_and_json_stays_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")
    src = str(FIXTURES / "onboarding" / "praxis.csv")
    assert main(["--config", str(config), "mapping", "preview", src, "--client", "nobody", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["ok"] is False and "mapping file not found" in err
    broken = tmp_path / "mappings" / "nobody.yaml"
    broken.write_text("version: 1\nclient: nobody\nfields: {creditor_reference: A, principal_amount: {colum: B}}\n",
                      encoding="utf-8")
    assert main(["--config", str(config), "mapping", "check", "--client", "nobody", "--json"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"]["line"] == 3 and "colum" in err
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert main(["mapping", "suggest", str(empty), "--client", "x"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and "the file is empty" in err
