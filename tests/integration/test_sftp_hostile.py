"""What careless and hostile SFTP clients send, against the real asyncssh server: names the gateway could
not answer under, and requests that would change a file behind the upload's back."""

from __future__ import annotations

import asyncio
import csv
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.sftp_support import ClientKey, ServerThread, sftp_server, client_csv, make_key, sftp_clients_config
from tests.support import wait_for


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ClientKey]:
    return {"demo": make_key(tmp_path / "client-keys", "demo")}


@pytest.fixture
def server(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> Iterator[ServerThread]:
    with sftp_server(tmp_path, db_url, sftp_clients_config(keys)) as srv:
        yield srv


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


def _rss_mb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS"))


def test_pipelined_huge_reads_from_a_client_that_does_not_take_the_answers_stay_bounded(
        server: ServerThread, keys: dict[str, ClientKey]) -> None:
    upload = server.app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    (upload / ".big.part").write_bytes(os.urandom(16 * 1024 * 1024))  # ignored by the watcher: a temp name
    # OpenSSH's ssh as the transport, the SFTP packets written by hand: 30 reads asking 4 GB each at once,
    # and nothing read back (the pipe fills, ssh stops reading the socket, the answers pile up at the server).
    proc = subprocess.Popen(
        ["ssh", "-i", str(keys["demo"].private), "-p", str(server.port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "LogLevel=ERROR", "-s", "demo@127.0.0.1", "sftp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def send(kind: int, payload: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(struct.pack(">IB", len(payload) + 1, kind) + payload)
        proc.stdin.flush()

    def answer() -> tuple[int, bytes]:
        assert proc.stdout is not None
        (length,) = struct.unpack(">I", proc.stdout.read(4))
        data = proc.stdout.read(length)
        return data[0], data[1:]

    def string(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    try:
        send(1, struct.pack(">I", 3))  # SSH_FXP_INIT
        assert answer()[0] == 2
        send(3, struct.pack(">I", 1) + string(b"/upload/.big.part") + struct.pack(">II", 1, 0))  # OPEN, READ
        kind, data = answer()
        assert kind == 102, data  # SSH_FXP_HANDLE
        handle = data[8:8 + struct.unpack(">I", data[4:8])[0]]
        send(5, struct.pack(">I", 2) + string(handle) + struct.pack(">QI", 0, 4_000_000_000))
        kind, data = answer()
        assert kind == 103 and len(data) - 8 <= 256 * 1024  # SSH_FXP_DATA: a short read, never 16 MB at once
        before = _rss_mb()
        for i in range(30):
            send(5, struct.pack(">I", 10 + i) + string(handle) + struct.pack(">QI", 0, 4_000_000_000))
        peak, deadline = before, time.monotonic() + 4
        while time.monotonic() < deadline:  # a measuring window: the answers pile up within it, or not
            peak = max(peak, _rss_mb())
            time.sleep(0.1)
        assert peak - before < 64, f"{peak - before} MB more while the client took no answers"
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()


def test_asyncssh_clients_can_download_whole_files(server: ServerThread, keys: dict[str, ClientKey],
                                                   tmp_path: Path) -> None:
    # asyncssh's get asks for the file's data ranges first, then reads blocks larger than one answer holds.
    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def run() -> bytes:
        async with server.connect(keys["demo"].private, "demo") as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("/upload/.big.part", "wb") as fh:
                await fh.write(payload)
            await sftp.get("/upload/.big.part", str(tmp_path / "back.bin"))
            async with sftp.open("/upload/.big.part", "rb") as fh:
                assert await fh.read() == payload  # one read of "everything", answered in short reads
        return (tmp_path / "back.bin").read_bytes()

    assert asyncio.run(run()) == payload
