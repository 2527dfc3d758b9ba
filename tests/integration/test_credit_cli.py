"""`gateway credit check` and `gateway credit audit --client X` as an operator or a script uses them, against the
loopback bureau simulators (one of them down)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.bureaus.simulators.book import Fault
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from gateway.config import load_config
from gateway.entrypoints.cli import main
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.integration.test_credit import credit_config, sims  # noqa: F401 - the simulators fixture

PERSON = ["--first-name", "Paul", "--last-name", "Pleite", "--birth-date", "1970-01-02", "--postal-code", "50667",
          "--city", "Köln"]


@pytest.fixture
def config(tmp_path: Path, db_url: str, sims: dict[str, HttpBureauSimulator]) -> Iterator[Path]:  # noqa: F811
    path = write_config(tmp_path, db_url, **credit_config(sims, max_checks_per_hour=3))
    init_keys(load_config(path))
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    yield path


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_then_cached_then_refused_and_the_audit_export(config: Path, capsys: pytest.CaptureFixture[str],
                                                             sims: dict[str, HttpBureauSimulator],  # noqa: F811
                                                             tmp_path: Path) -> None:
    sims["third"].set_fault(Fault.DOWN)
    code, out, _ = run(capsys, config, "credit", "check", "--client", "demo", "--interest", "contract_initiation",
                       "--user", "alice", *PERSON, "--json")
    first = json.loads(out)
    assert code == 0 and first["colour"] == "red" and first["incomplete"] is True
    assert {b["bureau"]: b["status"] for b in first["bureaus"]} == {"json": "answered", "soap": "answered",
                                                                   "third": "error"}
    assert first["results"]["soap"]["entries"][0]["kind"] == "insolvency"
    code, out, _ = run(capsys, config, "credit", "check", "--client", "demo", "--interest", "claim_collection",
                       "--user", "bob", "--business", "--company", "Musterbau GmbH", "--postal-code", "10115",
                       "--city", "Berlin")
    assert code == 0 and "GREEN" in out and "score_ok" in out and "incomplete  yes" in out
    code, _, err = run(capsys, config, "credit", "check", "--client", "demo", "--interest", "contract_initiation",
                       "--user", "alice", "--first-name", "Paul", "--postal-code", "1", "--city", "K")
    assert code == 2 and "refused (subject)" in err and "last_name, birth_date" in err
    run(capsys, config, "credit", "check", "--client", "demo", "--interest", "contract_initiation", "--user", "c",
        "--business", "--company", "Musterbau GmbH", "--postal-code", "10115", "--city", "Berlin")
    code, _, err = run(capsys, config, "credit", "check", "--client", "demo", "--interest", "contract_initiation",
                       "--user", "alice", *PERSON)
    assert code == 2 and "refused (rate_limited)" in err
    code, out, _ = run(capsys, config, "credit", "audit", "--client", "demo")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["requested_by"], r["outcome"], r["colour"], r["subject"]) for r in rows] == [
        ("alice", "queried", "red", "Paul Pleite"), ("bob", "queried", "green", "Musterbau GmbH"),
        ("c", "queried", "green", "Musterbau GmbH"), ("alice", "refused", "", "")]
    assert rows[0]["bureaus"] == "json:answered soap:answered third:error" and rows[0]["channel"] == "cli"
    target = tmp_path / "audit.jsonl"
    code, out, _ = run(capsys, config, "credit", "audit", "--client", "other", "--format", "json",
                       "--output", str(target))
    assert code == 0 and "0 entries" in out and target.read_text() == ""
    code, _, err = run(capsys, config, "credit", "audit", "--client", "nobody")
    assert code == 1 and "unknown client" in err
    code, out, _ = run(capsys, config, "credit", "erase", "--client", "demo", "--name", "Paul Pleite")
    assert code == 0 and out.startswith("1 checks erased")
    code, out, _ = run(capsys, config, "credit", "audit", "--client", "demo", "--format", "json")
    assert [json.loads(line)["subject"] for line in out.splitlines()] == [
        "[erased]", "Musterbau GmbH", "Musterbau GmbH", ""]
