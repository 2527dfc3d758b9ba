"""A client's SFTP limits hold for its console uploads too: the largest file (``clients.<id>.sftp.max_file_bytes``,
else ``sftp.max_file_bytes``) and the quota of files waiting in its ``upload/`` (``quota_bytes``). Before, the
console took any file up to ``web.max_upload_bytes`` (50 MB) from a client whose SFTP uploads stop at 100 KB.

A request whose ``Content-Length`` is over the limit is refused before its body is read; a file that turns out
over it once parsed is refused before it is spooled or ingested. Either way: 413 and the upload page saying why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from gateway.store.schema import submissions
from tests.integration.web.conftest import DEMO, Console

LARGEST, QUOTA = 100_000, 150_000


@pytest.fixture
def limited(console: Console, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    """demo's SFTP limits: 100 KB a file, 150 KB in all; other keeps the server's (200 MiB / 1 GiB)."""
    monkeypatch.setattr(console.app.config.clients["demo"].sftp, "max_file_bytes", LARGEST)
    monkeypatch.setattr(console.app.config.clients["demo"].sftp, "quota_bytes", QUOTA)
    upload = console.app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    yield console
    for f in upload.iterdir():
        f.unlink()


def _runs(console: Console, client: str) -> int:
    with console.app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(submissions)
                                .where(submissions.c.client_id == client)).scalar_one())


def _spool_empty(console: Console) -> bool:
    spool = console.app.config.var_dir / "web-uploads"
    return not spool.exists() or not any(spool.iterdir())


def test_a_file_over_the_clients_sftp_size_limit_is_refused_with_the_limit(limited: Console) -> None:
    console = limited
    anna = console.client("anna")
    token = console.csrf(anna, "/upload")
    before = _runs(console, "demo")
    # by its Content-Length (the file sent is small; what it announces is not): refused before the body is read
    announced = anna.post("/upload", data={"csrf": token}, files={"file": ("big.csv", DEMO.read_bytes(), "text/csv")},
                          headers={"content-length": str(LARGEST + 64 * 1024 + 1_000)})
    assert announced.status_code == 413, announced.status_code
    assert "Die Datei ist zu groß: höchstens 97 KB je Datei." in announced.text
    # by its size once parsed (within what the form may add around it)
    big = DEMO.read_bytes() + b"\n" * (LARGEST + 10_000)
    r = anna.post("/upload", data={"csrf": token}, files={"file": ("big.csv", big, "text/csv")})
    assert r.status_code == 413 and "höchstens 97 KB je Datei" in r.text
    assert _runs(console, "demo") == before and _spool_empty(console)
    # the same file from a client without such a limit is taken; a small one from demo too
    ben = console.client("ben")
    other = ben.post("/upload", data={"csrf": console.csrf(ben, "/upload")},
                     files={"file": ("big.csv", big.replace(b"RE-2025-", b"LIM-1-"), "text/csv")})
    assert other.status_code == 200 and "Ergebnis: big.csv" in other.text
    small = anna.post("/upload", data={"csrf": token},
                      files={"file": ("small.csv", DEMO.read_bytes().replace(b"RE-2025-", b"LIM-2-"), "text/csv")})
    assert small.status_code == 200 and "Ergebnis: small.csv" in small.text
    assert _runs(console, "demo") == before + 1
    english = anna.post("/upload?lang=en", data={"csrf": token}, files={"file": ("big.csv", big, "text/csv")})
    assert english.status_code == 413 and "The file is too large: at most 97 KB per file." in english.text


def test_a_file_that_would_take_the_client_over_its_quota_is_refused(limited: Console) -> None:
    console = limited
    upload = console.app.config.inbox_dir / "demo" / "upload"
    (upload / "waiting.csv").write_bytes(b"x" * 120_000)  # dropped over SFTP, not ingested yet
    anna = console.client("anna")
    token = console.csrf(anna, "/upload")
    before = _runs(console, "demo")
    data = DEMO.read_bytes().replace(b"RE-2025-", b"LIM-3-") + b"\n" * 40_000  # 42 KB: 162 KB with the waiting file
    r = anna.post("/upload", data={"csrf": token}, files={"file": ("q.csv", data, "text/csv")})
    assert r.status_code == 413
    assert "Kein Platz für diese Datei (41 KB): Ihr Speicher für Dateien fasst 146 KB, 117 KB davon" in r.text
    announced = anna.post("/upload", data={"csrf": token}, files={"file": ("q.csv", DEMO.read_bytes(), "text/csv")},
                          headers={"content-length": str(64 * 1024 + 40_000)})
    assert announced.status_code == 413 and "Kein Platz für diese Datei" in announced.text
    assert _runs(console, "demo") == before and _spool_empty(console)
    (upload / "waiting.csv").unlink()  # ingested meanwhile: room again
    ok = anna.post("/upload", data={"csrf": token}, files={"file": ("q.csv", data, "text/csv")})
    assert ok.status_code == 200 and "Ergebnis: q.csv" in ok.text
    assert _runs(console, "demo") == before + 1
