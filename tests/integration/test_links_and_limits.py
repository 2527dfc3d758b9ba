"""A client's upload folder is never a way out of it: links are refused, not followed; and texts from
files are held to the SOAP interface's lengths."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.entrypoints.watcher import InboxWatcher
from gateway.services.client_files import ClientFile, LinkRefused
from gateway.services.inbox import UploadBook, ingest_dropped
from gateway.services.ingest import ingest_file
from gateway.store.db import read_tx
from gateway.store.schema import submissions
from tests.conftest import ROOT

HEADER = (ROOT / "examples" / "demo.csv").read_bytes().split(b"\n", 1)[0].decode("windows-1252").strip()
SECRET = "Geheimzeile-7Q4"  # what a followed link would quote back to the client


def demo_row(ref: str, last_name: str = "Muster", birth: str = "01.02.1970") -> str:
    return (f"{ref};K-1;Herr;Max;{last_name};;{birth};Hauptstr;1;50667;Koeln;DE;max@example.de;;"
            f"DE89370400440532013000;15.01.2025;29.01.2025;10,00;;;")


def _acks(app: App) -> dict[str, str]:
    folder = app.config.inbox_dir / "demo" / "ack"
    return {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()} if folder.exists() else {}


def test_a_link_in_the_upload_folder_gets_a_failed_ack_and_is_never_read(app: App, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"  # a valid demo file: if the link were followed it would be ingested
    outside.write_text(f"{HEADER}\n{demo_row('OUT-1', SECRET)}\n", encoding="windows-1252")
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True)
    for name, target in (("leak.csv", outside), ("dangling.csv", tmp_path / "nowhere.csv"),
                         ("passwd.csv", Path("/etc/passwd"))):
        (upload / name).symlink_to(target)
        result = ingest_dropped(app, UploadBook(app), "demo", upload / name)
        assert result is not None and result.status == "failed" and result.submission is None
        assert not os.path.lexists(upload / name)  # the link is removed, not what it points to
    assert outside.exists() and Path("/etc/passwd").exists()
    acks = _acks(app)
    assert sorted(acks) == ["dangling.csv.ack.csv", "leak.csv.ack.csv", "passwd.csv.ack.csv"]
    for text in acks.values():
        assert "link_refused" in text and "links are not accepted" in text
        assert SECRET not in text and "root:" not in text and str(tmp_path) not in text
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(submissions)).scalar_one() == 0


def test_the_watcher_hands_a_link_on_as_a_link(tmp_path: Path) -> None:
    (tmp_path / "outside.csv").write_text("x", encoding="utf-8")
    upload = tmp_path / "inbox" / "demo" / "upload"
    upload.mkdir(parents=True)
    (upload / "leak.csv").symlink_to(tmp_path / "outside.csv")
    (upload / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    watcher = InboxWatcher({"demo": upload}, stable_seconds=0.0)
    watcher.sweep()
    assert sorted(p.name for _, p in watcher.ready()) == ["dangling.csv", "leak.csv"]


def test_a_name_swapped_for_a_link_after_the_check_still_reads_the_checked_file(tmp_path: Path) -> None:
    jail = tmp_path / "upload"
    jail.mkdir()
    (jail / "a.csv").write_text("the client's own bytes", encoding="utf-8")
    (tmp_path / "secret").write_text(SECRET, encoding="utf-8")
    with ClientFile(jail / "a.csv", jail) as checked:
        (jail / "swap").symlink_to(tmp_path / "secret")
        os.replace(jail / "swap", jail / "a.csv")  # the name now is a link to the secret
        assert checked.path.read_text(encoding="utf-8") == "the client's own bytes"
    for bad in (jail / "a.csv", tmp_path / "secret"):  # a link; a file outside the folder
        try:
            ClientFile(bad, jail).close()
        except LinkRefused as exc:
            assert str(tmp_path) not in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_texts_over_the_soap_limits_are_rejected_with_too_long(app: App, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    rows = [demo_row("LONG-1", "L" * 900_000), demo_row("LONG-2", "N" * 100), demo_row("LONG-3", "N" * 101)]
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="windows-1252")
    result = ingest_file(app, path, "demo")
    assert (result.accepted, result.rejected) == (1, 2)
    with open(result.ack_path or "", encoding="utf-8", newline="") as fh:
        lines = {f"LONG-{int(r['row']) - 1}": r for r in csv.DictReader(fh, delimiter=";")}
    assert lines["LONG-1"]["codes"] == "too_long" and "900000 characters, at most 100" in lines["LONG-1"]["messages"]
    assert lines["LONG-2"]["outcome"] == "accepted"
    assert lines["LONG-3"]["codes"] == "too_long" and "Nachname" in lines["LONG-3"]["messages"]
    assert "L" * 200 not in "".join(_acks(app).values())  # the value is not quoted back, not even to the client
