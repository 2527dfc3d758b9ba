"""What careless and hostile SFTP clients send, against the real asyncssh server: names the gateway could
not answer under, and requests that would change a file behind the upload's back."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.sftp_support import ClientKey, ServerThread, client_csv, make_key, sftp_clients_config
from tests.support import wait_for


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ClientKey]:
    return {"demo": make_key(tmp_path / "client-keys", "demo")}


@pytest.fixture
def server(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> Iterator[ServerThread]:
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0}, clients=sftp_clients_config(keys),
                       routing=[{"partner": "demo-agency"}])
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    try:
        with ServerThread(app) as srv:
            yield srv
    finally:
        app.close()


def _outcomes(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [r["outcome"] for r in csv.DictReader(fh, delimiter=";")]


def test_a_name_too_long_to_answer_under_is_refused_at_open(server: ServerThread, keys: dict[str, ClientKey],
                                                            tmp_path: Path) -> None:
    data = client_csv(tmp_path / "f.csv", 2, "LN").read_bytes()
    longest = "L" * 152 + ".csv"  # 156 bytes: still fits the ack's temp name with a 64-byte host name
    too_long = "L" * 246 + ".csv"  # 250: the file system takes it, its ack "<name>.ack.csv" it does not

    async def run() -> list[str]:
        errors = []
        async with server.connect(keys["demo"].private, "demo") as conn, conn.start_sftp_client() as sftp:
            for name in (too_long, "ü" * 80 + ".csv"):  # 164 bytes in UTF-8
                with pytest.raises(asyncssh.SFTPFailure) as caught:
                    async with sftp.open(f"/upload/{name}", "wb") as fh:
                        await fh.write(data)
                errors.append(str(caught.value.reason))
            async with sftp.open("/upload/.x.part", "wb") as fh:
                await fh.write(data)
            with pytest.raises(asyncssh.SFTPFailure) as caught:
                await sftp.rename("/upload/.x.part", f"/upload/{too_long}")
            errors.append(str(caught.value.reason))
            async with sftp.open(f"/upload/{longest}", "wb") as fh:
                await fh.write(data)
        return errors

    errors = asyncio.run(run())
    assert errors == ["file name too long: at most 160 bytes (UTF-8)"] * 3
    upload = server.app.config.inbox_dir / "demo" / "upload"
    assert not [p for p in upload.iterdir() if len(p.name.encode()) > 160]  # nothing under a refused name
    ack = server.app.config.inbox_dir / "demo" / "ack" / f"{longest}.ack.csv"
    wait_for("the longest name's ack", ack.exists, 60)
    assert _outcomes(ack) == ["accepted", "accepted"]


def test_a_rewrite_cut_to_its_length_is_ingested_as_written_never_with_the_old_tail(
        server: ServerThread, keys: dict[str, ClientKey], tmp_path: Path) -> None:
    long = client_csv(tmp_path / "long.csv", 5, "OLD").read_bytes()
    short = client_csv(tmp_path / "short.csv", 1, "NEW").read_bytes()

    async def run() -> tuple[str, str]:
        async with server.connect(keys["demo"].private, "demo") as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("/upload/cases.csv.part", "wb") as fh:
                await fh.write(long)
            # A client rewriting the file in place: no truncate at open, the shorter content, then its size.
            async with sftp.open("/upload/cases.csv.part", "r+b") as fh:
                await fh.write(short, 0)
                await fh.truncate(len(short))
            with pytest.raises(asyncssh.SFTPOpUnsupported) as by_name:
                await sftp.truncate("/upload/cases.csv.part", 10)
            with pytest.raises(asyncssh.SFTPFailure) as too_far:
                async with sftp.open("/upload/grow.csv", "wb") as fh:
                    await fh.truncate(10 ** 12)  # a terabyte of holes, past the per-file limit
            await sftp.rename("/upload/cases.csv.part", "/upload/cases.csv")
        return str(by_name.value.reason), str(too_far.value.reason)

    by_name, too_far = asyncio.run(run())
    assert "by name is not supported" in by_name
    assert too_far.startswith("file too large: 1000000000000 bytes would exceed the limit")
    ack = server.app.config.inbox_dir / "demo" / "ack" / "cases.csv.ack.csv"
    wait_for("the rewritten file's ack", ack.exists, 60)
    assert _outcomes(ack) == ["accepted"]  # one row: the new content alone
    assert "NEW-000000" in ack.read_text(encoding="utf-8")
    assert not (server.app.config.inbox_dir / "demo" / "upload" / "grow.csv").exists()
