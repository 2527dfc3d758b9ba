"""Ingest on SQLite and PostgreSQL: outcomes per row, duplicates, dry runs, unusable files, crash resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.entrypoints.cli import main
from gateway.services.ingest import ingest_file
from gateway.services.inbox import resume_unfinished
from gateway.store import claims as claim_store
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from gateway.store.schema import claims, outbox, submissions
from tests.conftest import ROOT

DEMO = ROOT / "examples" / "demo.csv"
HEADER = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;"
          "Telefon;IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung")


def row(ref: str, amount: str = "100,00", iban: str = "DE89370400440532013000") -> str:
    return (f"{ref};K1;Herr;Max;Muster;;01.01.1980;Weg;1;10115;Berlin;DE;m@example.de;;{iban};"
            f"01.02.2025;15.02.2025;{amount};;;")


def write_csv(path: Path, *rows: str) -> Path:
    path.write_bytes(("\r\n".join((HEADER, *rows)) + "\r\n").encode("cp1252"))
    return path


def count(app: App, table: object) -> int:
    with read_tx(app.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_demo_file_outcomes_ack_and_outbox(app: App, tmp_path: Path) -> None:
    result = ingest_file(app, DEMO, "demo")
    assert (result.rows, result.accepted, result.held, result.rejected) == (12, 7, 1, 4)
    assert result.status == "completed_with_errors"
    by_ref = {r.reference: r for r in result.results if r.outcome != "rejected"}
    assert by_ref["RE-2025-0004"].outcome == "held"
    assert [f.code for f in by_ref["RE-2025-0004"].findings] == ["debtor_minor"]
    rejected = {(r.row, f.code, f.column) for r in result.results for f in r.findings if r.outcome == "rejected"}
    assert (6, "invalid_iban", "IBAN") in rejected
    assert (7, "invalid_amount", "Betrag") in rejected
    assert (11, "duplicate_reference", "Rechnungsnr") in rejected
    ack = Path(str(result.ack_path))
    with open(ack, encoding="utf-8", newline="") as fh:
        lines = list(csv.DictReader(fh, delimiter=";"))
    assert [ln["row"] for ln in lines] == [str(r.row) for r in result.results]
    assert lines[4]["messages"].startswith("IBAN: ")
    assert count(app, claims) == 8  # 7 accepted + 1 held; rejected rows are findings, not claims
    with read_tx(app.engine) as conn:
        [ob] = conn.execute(select(outbox)).mappings().all()
        sub = sub_store.get(conn, str(result.submission))
        found = sub_store.findings(conn, sub["id"])
    assert len(json.loads(ob["payload"])["claim_ids"]) == 7  # the held claim is not sent
    assert sub["total_minor"] == 555045 and sub["rows"] == 12
    assert {f["code"] for f in found} >= {"debtor_minor", "invalid_iban", "invalid_amount", "duplicate_reference"}


def test_raw_file_is_kept_encrypted_and_restorable(app: App) -> None:
    result = ingest_file(app, DEMO, "demo")
    with read_tx(app.engine) as conn:
        sub = sub_store.get(conn, str(result.submission))
        raw = b"".join(sub_store.read_payload(conn, app.cipher, sub["id"]))
        stored = conn.exec_driver_sql("SELECT data FROM submission_payloads").fetchall()
    assert raw == DEMO.read_bytes()
    assert b"RE-2025-0001" not in b"".join(bytes(r[0]) for r in stored)


def test_same_file_twice_is_not_ingested_twice(app: App, tmp_path: Path) -> None:
    first = ingest_file(app, DEMO, "demo")
    copy = tmp_path / "renamed.csv"
    shutil.copy(DEMO, copy)
    again = ingest_file(app, copy, "demo")
    assert again.status == "duplicate" and again.duplicate_of == first.submission
    assert count(app, submissions) == 1 and count(app, claims) == 8


def test_reference_already_accepted_in_an_earlier_file_is_rejected(app: App, tmp_path: Path) -> None:
    ingest_file(app, write_csv(tmp_path / "a.csv", row("X-1"), row("X-2")), "demo")
    second = ingest_file(app, write_csv(tmp_path / "b.csv", row("X-2"), row("X-3")), "demo")
    assert [(r.reference, r.outcome) for r in second.results] == [("X-2", "rejected"), ("X-3", "accepted")]
    assert second.results[0].findings[0].code == "duplicate_reference"
    assert "(claim " in second.results[0].findings[0].message
    assert count(app, claims) == 3


def test_dry_run_stores_nothing(app: App) -> None:
    result = ingest_file(app, DEMO, "demo", dry_run=True)
    assert (result.accepted, result.held, result.rejected) == (7, 1, 4)
    assert result.submission is None and result.ack_path is None
    assert count(app, submissions) == 0 and count(app, claims) == 0 and count(app, outbox) == 0


@pytest.mark.parametrize("content,expected", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, ""),
    ("Nummer;Wert\r\n1;2\r\n".encode("cp1252"), "Rechnungsnr"),
])
def test_unusable_file_fails_clearly_and_is_kept(app: App, tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    result = ingest_file(app, path, "demo")
    assert result.status == "failed" and result.error and expected in result.error
    assert "broken.csv" in result.error
    ack = Path(str(result.ack_path)).read_text(encoding="utf-8")
    assert "failed" in ack and "input_error" in ack
    with read_tx(app.engine) as conn:
        sub = sub_store.get(conn, str(result.submission))
        assert b"".join(sub_store.read_payload(conn, app.cipher, sub["id"])) == content
    assert sub["status"] == "failed" and count(app, claims) == 0


def test_crash_mid_file_resumes_without_loss_or_duplicates(app: App, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.config.dispatcher, "batch_size", 3)
    rows = [row(f"C-{i}", iban="DE0" if i == 4 else "DE89370400440532013000") for i in range(10)]
    path = write_csv(tmp_path / "big.csv", *rows)
    from gateway.services.ingest_run import IngestRun
    real_flush = IngestRun._flush
    calls = {"n": 0}

    def crashing_flush(self: object, chunk: list[object]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("simulated crash after two committed chunks")
        real_flush(self, chunk)  # type: ignore[arg-type]

    monkeypatch.setattr(IngestRun, "_flush", crashing_flush)
    with pytest.raises(SystemExit):
        ingest_file(app, path, "demo")
    assert count(app, claims) == 5  # two chunks of 3 rows committed, row C-4 rejected
    monkeypatch.setattr(IngestRun, "_flush", real_flush)
    [result] = resume_unfinished(app)
    assert (result.rows, result.accepted, result.rejected) == (10, 9, 1)
    assert count(app, claims) == 9
    with read_tx(app.engine) as conn:
        sub = sub_store.get(conn, str(result.submission))
        keys = [r[0] for r in conn.execute(select(outbox.c.idempotency_key).order_by(outbox.c.id))]
        ids = [c["id"] for c in claim_store.listing(conn, client_id="demo")]
    assert sub["status"] == "completed_with_errors" and len(keys) == 4 and len(set(keys)) == 4
    assert sorted(ids) == list(range(ids[-1], ids[-1] + 9))
    ack_rows = Path(str(result.ack_path)).read_text(encoding="utf-8").splitlines()
    assert len(ack_rows) == 11


def test_cli_ingest_json_and_exit_codes(app: App, config_path: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config_path), "ingest", str(DEMO), "--client", "demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {k: doc[k] for k in ("rows", "accepted", "held", "rejected")} == {
        "rows": 12, "accepted": 7, "held": 1, "rejected": 4}
    assert doc["submission"] and len(doc["results"]) == 12
    assert doc["results"][4]["findings"][0]["code"] == "invalid_iban"
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"")
    assert main(["--config", str(config_path), "ingest", str(broken), "--client", "demo"]) == 3
    assert "broken.csv" in capsys.readouterr().err
    assert main(["--config", str(config_path), "ingest", str(DEMO), "--client", "nobody"]) == 1
    assert "unknown client 'nobody'" in capsys.readouterr().err
    assert main(["--config", str(config_path), "claims", "show", "999999"]) == 4
