"""`gateway serve` on a SQLite database whose pages are damaged (a failing disk, a copy taken while it was written):
it ends at once with one CRITICAL line and exit 6, and a client's file that met the damage is neither set aside nor
answered as failed; it waits in `upload/` for a mended database. Before, the damage was an ordinary error: counted
against the client's file (three, then a failed ack for a file that was not at fault) and retried by the tasks until
`give_up_after` of them in a row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import serve_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _damage(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` and of each of its indexes: every read of it meets the damage."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [r for (r,) in conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0",
                                            (table,))]
    finally:
        conn.close()
    assert roots
    with open(db, "r+b") as f:
        for root in roots:
            f.seek((root - 1) * page_size)
            f.write(b"\xa5" * page_size)


def test_serve_ends_at_once_on_a_damaged_database_and_does_not_fail_the_file(tmp_path: Path) -> None:
    db = tmp_path / "var" / "gateway.db"
    cfg = write_config(tmp_path, f"sqlite:///{db}", dispatcher={"enabled": False},
                       supervisor={"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3, "file_attempts": 3,
                                   "give_up_after": 1000})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    _damage(db, "submissions")
    upload = tmp_path / "inbox" / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    (upload / "claims.csv").write_bytes((ROOT / "examples" / "demo.csv").read_bytes())
    with serve_process(cfg) as (proc, log):
        wait_for("serve to end", lambda: proc.poll() is not None, 60)
        text = log.read_text()
    assert proc.returncode == 6, text
    critical = [line for line in text.splitlines() if " CRITICAL " in line]
    assert len(critical) == 1 and "supervisor.database_broken" in critical[0], text
    assert "database disk image is malformed" in critical[0]
    assert (upload / "claims.csv").exists() and not (tmp_path / "inbox" / "demo" / "failed").exists()
    assert not list((tmp_path / "inbox" / "demo").glob("ack/*.ack.csv")), text
    assert "Traceback" not in text
