"""Hostile spreadsheets reach a running `gateway serve` through the watched inbox and its SFTP server: each
gets a failed ack, `serve` stays up and takes the next demo file, and a restart with such a submission
pending starts cleanly. These files once killed the process (calamine's 512 GiB abort), took gigabytes,
or escaped a loop as NotImplementedError and stopped intake for good."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

from gateway.bootstrap import build_app
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT, write_config
from tests.e2e.test_sftp_serve import GATEWAY, Served
from tests.fixtures.hostile import generate
from tests.sftp_support import make_key, openssh_batch, sftp_clients_config, wait_for


def sheet_mapping(base: Path, name: str, kind: str) -> None:
    (base / "mappings" / f"{name}.yaml").write_text(
        f"version: 1\nclient: {name}\nformat:\n  type: {kind}\n  decimal_separator: ','\n"
        "  date_formats: ['%d.%m.%Y']\nfields:\n  creditor_reference: Rechnungsnr\n"
        "  claim_type: {const: service}\n  currency: {const: EUR}\n  principal_amount: Betrag\n"
        "  due_date: Faellig\n  debtor.last_name: Nachname\n", encoding="utf-8")


def outcomes(ack: Path) -> list[str]:
    with open(ack, encoding="utf-8", newline="") as fh:
        return [r["outcome"] for r in csv.DictReader(fh, delimiter=";")]


def test_hostile_files_through_the_watcher_and_sftp_leave_serve_working(tmp_path: Path, db_url: str) -> None:
    keys = {cid: make_key(tmp_path / "client-keys", cid) for cid in ("demo", "sheets", "legacy")}
    clients = sftp_clients_config(keys)
    clients["sheets"]["mapping"], clients["legacy"]["mapping"] = "sheets", "legacy"
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0}, clients=clients,
                       routing=[{"partner": "demo-agency"}])
    sheet_mapping(tmp_path, "sheets", "xlsx")
    sheet_mapping(tmp_path, "legacy", "xls")
    for args in (("keys", "init"), ("db", "upgrade")):
        out = subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    sparse = generate.sparse_xlsx(hostile / "sparse.xlsx", 1_048_576, 16_384)  # A1 and XFD1048576
    damaged = generate.version_22_3_zip(hostile / "damaged.xlsx")
    far = generate.far_cell_xls(hostile / "far.xls")  # calamine wants ~1 GB: the child's limit stops it

    # What an ingest killed in the middle of such a file leaves behind: a processing submission.
    app = build_app(cfg)
    try:
        with write_tx(app.engine) as conn:
            sub = sub_store.create(conn, client_id="legacy", channel="sftp", filename="pending.xls", sha256="c" * 64,
                                   size=far.stat().st_size, dedupe=True)
            assert sub is not None
            sub_store.store_payload(conn, app.cipher, sub["id"], [far.read_bytes()])
    finally:
        app.close()

    s = Served(tmp_path, cfg)
    try:
        port = s.start()  # resumes the pending submission in the background: it must not take the process down
        inbox = tmp_path / "inbox"
        wait_for("the pending submission's failed ack", lambda: (inbox / "legacy/ack/pending.xls.ack.csv").exists())
        shutil.copy(sparse, inbox / "sheets" / "upload" / "sparse.xlsx.tmp")
        (inbox / "sheets" / "upload" / "sparse.xlsx.tmp").rename(inbox / "sheets" / "upload" / "sparse.xlsx")
        out = openssh_batch(port, keys["sheets"].private, "sheets", [f"put {damaged} /upload/damaged.xlsx"],
                            tmp_path / "known_hosts")
        assert out.returncode == 0, out.stderr
        out = openssh_batch(port, keys["legacy"].private, "legacy", [f"put {far} /upload/far.xls"],
                            tmp_path / "known_hosts")
        assert out.returncode == 0, out.stderr
        acks = {"sparse": inbox / "sheets/ack/sparse.xlsx.ack.csv", "damaged": inbox / "sheets/ack/damaged.xlsx.ack.csv",
                "far": inbox / "legacy/ack/far.xls.ack.csv", "pending": inbox / "legacy/ack/pending.xls.ack.csv"}
        wait_for("a failed ack for every hostile file", lambda: all(a.exists() for a in acks.values()), 90)
        for name, ack in acks.items():
            assert outcomes(ack) == ["failed"], (name, ack.read_text(encoding="utf-8"))
        assert "16384" in acks["sparse"].read_text(encoding="utf-8") or "1048576" in acks["sparse"].read_text(
            encoding="utf-8")  # the limit or the far cell is named
        assert s.proc is not None and s.proc.poll() is None  # still serving

        shutil.copy(ROOT / "examples" / "demo.csv", inbox / "demo" / "upload" / "demo.csv.part")
        (inbox / "demo" / "upload" / "demo.csv.part").rename(inbox / "demo" / "upload" / "demo.csv")
        wait_for("the demo file's ack", lambda: (inbox / "demo/ack/demo.csv.ack.csv").exists(), 60)
        assert "accepted" in outcomes(inbox / "demo/ack/demo.csv.ack.csv")
        assert s.stop() == 0

        s.start()  # starts cleanly with all of that behind it
        assert s.stop() == 0
        app = build_app(cfg)
        try:
            with read_tx(app.engine) as conn:
                statuses = {r["filename"]: r["status"] for r in sub_store.listing(conn, limit=100)}
        finally:
            app.close()
        assert statuses == {"pending.xls": "failed", "sparse.xlsx": "failed", "damaged.xlsx": "failed",
                            "far.xls": "failed", "demo.csv": "completed_with_errors"}
    finally:
        if s.proc is not None and s.proc.poll() is None:
            s.kill()
