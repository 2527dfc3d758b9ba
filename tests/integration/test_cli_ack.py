"""`gateway ingest FILE --ack TARGET`: a folder gets `<file>.ack.csv` in it; a target that cannot be
written is refused (exit 2) before anything is stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.entrypoints.cli import main
from tests.conftest import ROOT

DEMO = ROOT / "examples" / "demo.csv"
# Each test takes the ``app`` fixture for its migrated schema (the CLI migrates only SQLite by itself).


def ingest(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), "ingest", "--client", "demo", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def submissions(capsys: pytest.CaptureFixture[str], config: Path) -> list[dict[str, object]]:
    assert main(["--config", str(config), "submissions", "list", "--json"]) == 0
    docs: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return docs


@pytest.mark.parametrize("slash", ["", "/"])
def test_ack_into_a_folder(app: App, config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           slash: str) -> None:
    folder = tmp_path / "acks"
    folder.mkdir()
    code, out, err = ingest(capsys, config_path, str(DEMO), "--ack", f"{folder}{slash}", "--json")
    assert code == 0, err
    ack = folder / "demo.csv.ack.csv"
    assert json.loads(out)["ack"] == str(ack)
    assert len(ack.read_text(encoding="utf-8").splitlines()) == 13  # header + 12 rows
    assert sorted(p.name for p in folder.iterdir()) == ["demo.csv.ack.csv"]  # no stray temp file
    [sub] = submissions(capsys, config_path)
    assert (sub["status"], sub["rows"], sub["ack_path"]) == ("completed_with_errors", 12, str(ack))


def test_a_named_ack_file_is_kept(app: App, config_path: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    named = tmp_path / "answer.csv"
    assert ingest(capsys, config_path, str(DEMO), "--ack", str(named))[0] == 0
    assert named.read_text(encoding="utf-8").startswith("row;")


def test_an_xml_input_gets_an_xml_ack_in_the_folder(app: App, config_path: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    xml_in = shutil.copy(DEMO, tmp_path / "claims.xml")  # the suffix rule goes by the name, as in the inbox
    folder = tmp_path / "acks"
    folder.mkdir()
    assert ingest(capsys, config_path, str(xml_in), "--ack", str(folder))[0] == 0
    assert [p.name for p in folder.iterdir()] == ["claims.xml.ack.xml"]


@pytest.mark.parametrize("target, says", [
    ("missing/", "does not exist"),  # a folder that is not there
    ("missing/x.ack.csv", "does not exist"),  # a file in a folder that is not there
    ("afile/x.ack.csv", "is not a folder"),  # a "folder" that is a file
])
def test_unwritable_ack_target_is_refused_before_anything_is_stored(
        app: App, config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str,
        says: str) -> None:
    (tmp_path / "afile").write_text("x")
    code, out, err = ingest(capsys, config_path, str(DEMO), "--ack", f"{tmp_path}/{target}")
    assert code == 2
    assert "--ack" in err and says in err
    assert submissions(capsys, config_path) == []
    assert not (tmp_path / "missing").exists()
