"""A client file with rows a real export can hold but no partner can take (a 25-digit amount, a FileMaker line
break, a NUL deep in the file) reaches a running `gateway serve` over SFTP: those rows are rejected with their
column named, every other row is delivered, `serve` keeps running, and its DEBUG log holds no debtor data.
Before, the amount's OverflowError made the intake task retry the file and set it aside as failed, and the
control characters were acked accepted and failed at delivery."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from gateway.bootstrap import build_app
from gateway.store.db import read_tx
from gateway.store.schema import claim_current
from tests.conftest import write_config
from tests.e2e.test_sftp_serve import GATEWAY, Served
from tests.sftp_support import make_key, openssh_batch, sftp_clients_config, wait_for

HEADER = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;"
          "Telefon;IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung")
PLANTED, PLANTED_IBAN = "Zzplantedname", "DE89370400440532013000"


def line(ref: str, name: str = PLANTED, street: str = "Weg", amount: str = "100,00") -> str:
    return (f"{ref};K1;Herr;Max;{name};;01.01.1980;{street};1;10115;Berlin;DE;zz@example.de;;{PLANTED_IBAN};"
            f"01.02.2025;15.02.2025;{amount};;;")


def test_rows_no_partner_can_take_are_rejected_and_the_rest_is_delivered(tmp_path: Path, db_url: str) -> None:
    key = make_key(tmp_path / "client-keys", "demo")
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0}, clients=sftp_clients_config({"demo": key}),
                       logging={"level": "DEBUG"})
    for args in (("keys", "init"), ("db", "upgrade")):
        out = subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    lines = [HEADER, *(line(f"OK-{i}") for i in range(10)), line("BIG", amount="99999999999999999999999,99"),
             line("VT", street="Hauptstr.\x0bHinterhaus"), line("NUL", name=f"{PLANTED}\x00"), line("OK-last")]
    export = tmp_path / "export.csv"
    export.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))

    s = Served(tmp_path, cfg)
    try:
        port = s.start()
        out = openssh_batch(port, key.private, "demo", [f"put {export} /upload/export.csv"], tmp_path / "known_hosts")
        assert out.returncode == 0, out.stderr
        ack = tmp_path / "inbox" / "demo" / "ack" / "export.csv.ack.csv"
        wait_for("the export's ack", ack.exists, 60)
        with open(ack, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter=";"))
        assert "Rechnungsnr" in rows[0], rows  # a file failed as a whole gets a one-line ack without the column
        acked = {r["Rechnungsnr"]: r for r in rows}
        assert {ref: (r["outcome"], r["codes"]) for ref, r in acked.items() if not ref.startswith("OK-")} == {
            "BIG": ("rejected", "invalid_amount"), "VT": ("rejected", "invalid_value"),
            "NUL": ("rejected", "invalid_value")}, acked
        assert acked["VT"]["messages"].startswith("Strasse: holds the control character U+000B")
        assert acked["NUL"]["messages"].startswith("Nachname: holds the control character U+0000")
        assert [r["outcome"] for ref, r in acked.items() if ref.startswith("OK-")] == ["accepted"] * 11

        app = build_app(cfg)
        try:
            def delivered() -> bool:
                with read_tx(app.engine) as conn:
                    states = [r.state for r in conn.execute(claim_current.select())]
                return states == ["handed_over"] * 11
            wait_for("the 11 accepted claims handed over", delivered, 60)
        finally:
            app.close()
        assert s.proc is not None and s.proc.poll() is None  # still serving
        assert s.stop() == 0
    finally:
        if s.proc is not None and s.proc.poll() is None:
            s.kill()
    logs = "".join(p.read_text(encoding="utf-8", errors="replace") for p in tmp_path.glob("serve*.log"))
    assert "ingest.done" in logs and " DEBUG " in logs  # the DEBUG log is the one read here
    assert PLANTED not in logs and PLANTED_IBAN not in logs and "Hinterhaus" not in logs
