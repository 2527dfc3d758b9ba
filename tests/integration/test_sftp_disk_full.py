"""An SFTP upload that meets a full disk on the gateway is discarded, never ingested in part: the write fails,
the close fails, the client's ack says why (``storage_error``), and a later upload that fits is taken whole.
Before, a client closing after the failed write (as OpenSSH `sftp` and asyncssh's put do) made the truncated
file a complete upload, and its first rows were ingested as the whole file.

Real parts: the inbox on a real 2 MB tmpfs (needs mount; skipped where it is not allowed), OpenSSH `sftp` and
asyncssh clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.sftp_support import client_csv, make_key, openssh_batch, sftp_clients_config, sftp_server
from tests.support import small_tmpfs, wait_for


@pytest.fixture
def small_inbox(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "inbox", "2m") as inbox:
        yield inbox


def test_an_upload_that_fills_the_disk_is_discarded_not_ingested_in_part(tmp_path: Path, small_inbox: Path,
                                                                        db_url: str) -> None:
    key = make_key(tmp_path / "client-keys", "demo")
    big = client_csv(tmp_path / "big.csv", 20_000, "BIG")  # ~3.5 MB: more than the disk holds
    small = client_csv(tmp_path / "small.csv", 200, "SMALL")
    acks, upload = small_inbox / "demo" / "ack", small_inbox / "demo" / "upload"
    with sftp_server(tmp_path, db_url, sftp_clients_config({"demo": key})) as srv:
        async def put(local: Path, remote: str) -> None:
            async with srv.connect(key.private, "demo") as conn:
                async with conn.start_sftp_client() as sftp:
                    await sftp.put(str(local), remote)

        with pytest.raises(asyncssh.SFTPError, match="could not store this upload"):
            asyncio.run(put(big, "/upload/big.csv"))
        done = openssh_batch(srv.port, key.private, "demo", [f"put {big} /upload/big2.csv"], tmp_path / "known_hosts")
        assert done.returncode != 0  # OpenSSH's batch mode stops at the failed write

        for name in ("big.csv", "big2.csv"):
            ack = wait_for(f"{name}'s failed ack", lambda n=name: (acks / f"{n}.ack.csv").exists() and
                           "storage_error" in (acks / f"{n}.ack.csv").read_text(encoding="utf-8"))
            assert ack
            assert not (upload / name).exists()
        with read_tx(srv.app.engine) as conn:
            assert sub_store.listing(conn, client_id="demo", limit=10) == []  # nothing of them was ingested

        asyncio.run(put(small, "/upload/small.csv"))  # the disk has room again: taken whole
        wait_for("the small file's ack", lambda: (acks / "small.csv.ack.csv").exists())
        with read_tx(srv.app.engine) as conn:
            subs = sub_store.listing(conn, client_id="demo", limit=10)
        assert [(s["filename"], s["status"], s["accepted"]) for s in subs] == [("small.csv", "completed", 200)]
