"""`gateway claims|submissions list|show|history` with filters, as an operator or a script uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.entrypoints.cli import main
from gateway.services.ingest import ingest_file
from tests.conftest import ROOT


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str]:
    code = main(["--config", str(config), *args])
    return code, capsys.readouterr().out


def test_listing_filters_and_json(app: App, config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    code, out = run(capsys, config_path, "claims", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 8
    _, out = run(capsys, config_path, "claims", "list", "--json", "--status", "held")
    [held] = json.loads(out)
    assert held["creditor_reference"] == "RE-2025-0004" and held["state"] == "held"
    _, out = run(capsys, config_path, "claims", "list", "--json", "--status", "queued,held", "--client", "demo")
    assert len(json.loads(out)) == 8
    _, out = run(capsys, config_path, "claims", "list", "--json", "--client", "other")
    assert json.loads(out) == []
    _, out = run(capsys, config_path, "claims", "list", "--json", "--since", "2999-01-01")
    assert json.loads(out) == []
    _, out = run(capsys, config_path, "claims", "list", "--json", "--submission", str(result.submission))
    assert len(json.loads(out)) == 8

    _, out = run(capsys, config_path, "claims", "show", str(held["id"]), "--json")
    shown = json.loads(out)
    assert shown["claim"]["debtor"]["last_name"] == "Becker" and shown["state"] == "held"
    _, out = run(capsys, config_path, "claims", "history", str(held["id"]))
    assert "received" in out and "held" in out and "intake" in out

    _, out = run(capsys, config_path, "submissions", "list", "--json", "--status", "completed_with_errors")
    [sub] = json.loads(out)
    assert (sub["reference"], sub["rows"], sub["accepted"], sub["held"], sub["rejected"]) == (
        result.submission, 12, 7, 1, 4)
    _, out = run(capsys, config_path, "submissions", "list", "--json", "--status", "failed")
    assert json.loads(out) == []
    _, out = run(capsys, config_path, "submissions", "show", str(result.submission), "--json")
    assert json.loads(out)["handover"] == "processing"  # queued, not yet confirmed by the partner
    _, out = run(capsys, config_path, "submissions", "show", str(result.submission))
    assert "invalid_iban" in out and "Betrag" in out and "5550.45 EUR" in out
    _, out = run(capsys, config_path, "submissions", "list")
    assert str(result.submission) in out and "demo.csv" in out


def test_bad_arguments_are_usage_errors(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(config_path), "claims", "list", "--since", "23.11.2026"])
    assert exc.value.code == 2
    assert "expected a date like 2026-11-23" in capsys.readouterr().err
