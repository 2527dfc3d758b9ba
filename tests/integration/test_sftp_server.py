"""The SFTP inbox with real clients (OpenSSH ``sftp`` in batch mode and asyncssh) against a real server."""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.services.keys import init_keys
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.conftest import ROOT, write_config
from tests.sftp_support import (ClientKey, ServerThread, client_csv, make_key, openssh_batch, sftp_clients_config,
                                wait_for)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ClientKey]:
    return {cid: make_key(tmp_path / "client-keys", cid) for cid in ("demo", "acme")}


def _app(tmp_path: Path, db_url: str, keys: dict[str, ClientKey], **extra: Any) -> App:
    sftp = {"enabled": True, "port": 0, "max_auth_failures": 3, **extra.pop("sftp", {})}
    cfg = write_config(tmp_path, db_url, sftp=sftp, clients=sftp_clients_config(keys, **extra),
                       routing=[{"partner": "demo-agency"}])
    init_keys(load_config(cfg))
    return build_app(cfg, migrate=True)


@pytest.fixture
def server(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> Iterator[ServerThread]:
    app = _app(tmp_path, db_url, keys)
    try:
        with ServerThread(app) as srv:
            yield srv
    finally:
        app.close()


def _ack(srv: ServerThread, client: str, name: str) -> Path:
    return srv.app.config.inbox_dir / client / "ack" / f"{name}.ack.csv"


def _ack_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def _submissions(app: App) -> list[Any]:
    with read_tx(app.engine) as conn:
        return sub_store.listing(conn, limit=1000)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_openssh_upload_of_demo_csv_gets_ack_and_archive_listing(server: ServerThread, keys: dict[str, ClientKey],
                                                                 tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    out = openssh_batch(server.port, keys["demo"].private, "demo",
                        [f"put {ROOT / 'examples' / 'demo.csv'} /upload/demo.csv"], known)
    assert out.returncode == 0, out.stderr
    ack = wait_for("the ack", lambda: _ack(server, "demo", "demo.csv").exists() and _ack(server, "demo", "demo.csv"))
    lines = _ack_rows(ack)
    with open(ROOT / "examples" / "demo.csv", encoding="cp1252", newline="") as fh:
        source_rows = sum(1 for _ in csv.reader(fh, delimiter=";")) - 1
    assert len(lines) == source_rows and {ln["outcome"] for ln in lines} == {"accepted", "held", "rejected"}
    subs = _submissions(server.app)
    assert [(s["filename"], s["channel"]) for s in subs] == [("demo.csv", "sftp")]
    wait_for("the upload to leave the inbox",
             lambda: not (server.app.config.inbox_dir / "demo" / "upload" / "demo.csv").exists())
    # The client fetches its ack and the archive listing with the same tool.
    got = openssh_batch(server.port, keys["demo"].private, "demo",
                        [f"get /ack/demo.csv.ack.csv {tmp_path / 'got.csv'}", f"get /archive/received.csv "
                         f"{tmp_path / 'received.csv'}", "ls /"], known)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "got.csv").read_bytes() == ack.read_bytes()
    archived = _ack_rows(tmp_path / "received.csv")
    assert [(a["filename"], a["reference"]) for a in archived] == [("demo.csv", subs[0]["reference"])]
    assert (tmp_path / "known_hosts").read_text().count("ssh-ed25519") == 1  # the host key it was shown


def test_temp_name_is_ingested_on_rename_only(server: ServerThread, keys: dict[str, ClientKey],
                                              tmp_path: Path) -> None:
    src = client_csv(tmp_path / "f.csv", 20, "TMP")

    async def go() -> None:
        async with server.connect(keys["demo"].private, "demo") as conn, conn.start_sftp_client() as sftp:
            await sftp.put(str(src), "/upload/f.csv.filepart")
            # The close was answered after the gateway decided: a temp name is kept, not queued.
            assert server.book.state("demo", "f.csv.filepart") == "complete"
            assert server.inbox.queue.empty() and _submissions(server.app) == []
            await sftp.rename("/upload/f.csv.filepart", "/upload/f.csv")

    run(go())
    rows = _ack_rows(wait_for("the ack", lambda: _ack(server, "demo", "f.csv").exists() and _ack(server, "demo",
                                                                                                  "f.csv")))
    assert len(rows) == 20 and {r["outcome"] for r in rows} == {"accepted"}
    assert [s["filename"] for s in _submissions(server.app)] == ["f.csv"]


def test_connection_dropped_mid_upload_is_never_ingested_and_replaced_later(
        server: ServerThread, keys: dict[str, ClientKey], tmp_path: Path) -> None:
    data = client_csv(tmp_path / "big.csv", 400, "DROP").read_bytes()

    async def drop() -> None:
        conn = await server.connect(keys["demo"].private, "demo")
        sftp = await conn.start_sftp_client()
        f = await sftp.open("/upload/big.csv", "wb")
        await f.write(data[: len(data) // 2])
        conn.abort()  # the client vanishes: no close request for the handle

    run(drop())
    ack = wait_for("the incomplete ack", lambda: _ack(server, "demo", "big.csv").exists() and _ack(server, "demo",
                                                                                                    "big.csv"))
    assert [r["outcome"] for r in _ack_rows(ack)] == ["incomplete"]
    upload = server.app.config.inbox_dir / "demo" / "upload" / "big.csv"
    assert upload.exists() and upload.stat().st_size == len(data) // 2  # it stays
    assert _submissions(server.app) == []
    # Uploading it again replaces it; the ack becomes the real one.
    out = openssh_batch(server.port, keys["demo"].private, "demo", [f"put {tmp_path / 'big.csv'} /upload/big.csv"],
                        tmp_path / "kh")
    assert out.returncode == 0, out.stderr
    rows = wait_for("the real ack", lambda: [r for r in _ack_rows(ack) if r["outcome"] == "accepted"]
                    if ack.exists() else None)
    assert len(rows) == 400
    assert [s["filename"] for s in _submissions(server.app)] == ["big.csv"]


def test_openssh_client_killed_mid_upload(server: ServerThread, keys: dict[str, ClientKey], tmp_path: Path) -> None:
    src = client_csv(tmp_path / "slow.csv", 8000, "SLOW")
    upload = server.app.config.inbox_dir / "demo" / "upload" / "slow.csv"
    proc = subprocess.Popen(
        ["sftp", "-b", "-", "-l", "400", "-i", str(keys["demo"].private), "-P", str(server.port),
         "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
         "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "demo@127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(f"put {src} /upload/slow.csv\n")
    proc.stdin.flush()
    wait_for("a partial upload", lambda: upload.exists() and 0 < upload.stat().st_size)
    os.killpg(proc.pid, signal.SIGKILL)  # sftp and its ssh child die together, as on a crash
    proc.wait(10)
    proc.stdin.close()
    ack = wait_for("the incomplete ack", lambda: _ack(server, "demo", "slow.csv").exists()
                   and _ack(server, "demo", "slow.csv"))
    assert [r["outcome"] for r in _ack_rows(ack)] == ["incomplete"]
    assert upload.stat().st_size < src.stat().st_size and _submissions(server.app) == []


def test_two_clients_and_fifty_files_at_once(server: ServerThread, keys: dict[str, ClientKey],
                                             tmp_path: Path) -> None:
    files = {cid: [client_csv(tmp_path / f"{cid}-{i:02d}.csv", 5, f"{cid}{i}") for i in range(25)]
             for cid in ("demo", "acme")}

    async def upload(cid: str) -> None:
        async with server.connect(keys[cid].private, cid) as conn, conn.start_sftp_client() as sftp:
            await asyncio.gather(*(sftp.put(str(f), f"/upload/{f.name}") for f in files[cid]))

    async def both() -> None:
        await asyncio.gather(upload("demo"), upload("acme"))

    run(both())
    for cid, paths in files.items():
        for f in paths:
            ack = wait_for(f"ack of {f.name}", lambda: _ack(server, cid, f.name).exists() and _ack(server, cid, f.name))
            assert [r["outcome"] for r in _ack_rows(ack)] == ["accepted"] * 5
    # each ack is renamed into place a moment before its submission's final status commits
    def completed() -> list[Any] | None:
        rows = _submissions(server.app)
        return rows if len(rows) == 50 and all(r["status"] == "completed" for r in rows) else None

    subs = wait_for("50 completed submissions", completed)
    assert {s["client_id"] for s in subs} == {"demo", "acme"}
    assert all(s["channel"] == "sftp" for s in subs)


def test_escape_attempts_stay_in_the_jail(server: ServerThread, keys: dict[str, ClientKey], tmp_path: Path) -> None:
    inbox = server.app.config.inbox_dir
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    (inbox / "demo" / "upload").mkdir(parents=True, exist_ok=True)
    os.symlink(secret, inbox / "demo" / "upload" / "planted.csv.tmp")  # planted by someone else
    local = client_csv(tmp_path / "x.csv", 1, "ESC")

    async def go() -> None:
        async with server.connect(keys["demo"].private, "demo") as conn, conn.start_sftp_client() as sftp:
            assert sorted(await sftp.listdir("/")) == [".", "..", "ack", "archive", "status", "upload"]
            assert sorted(await sftp.listdir("/../../..")) == sorted(await sftp.listdir("/"))
            assert await sftp.realpath("../../etc") == "/etc"
            for path in ("/etc/passwd", "../../etc/passwd", str(secret), "/upload/planted.csv.tmp",
                         "/upload/../../../secret.txt", "/../acme/ack"):
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.get(path, str(tmp_path / "stolen"))
            assert not (tmp_path / "stolen").exists()
            for path in ("/x.csv", "/ack/x.csv", "/archive/x.csv", "/status/x.csv", "../x.csv", "/upload/sub/x.csv"):
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.put(str(local), path)
            with pytest.raises(asyncssh.SFTPError):
                await sftp.symlink(str(secret), "/upload/link.csv")
            with pytest.raises(asyncssh.SFTPError):
                await sftp.link("/upload/planted.csv.tmp", "/upload/hard.csv")
            with pytest.raises(asyncssh.SFTPError):
                await sftp.mkdir("/upload/sub")
            with pytest.raises(asyncssh.SFTPError):
                await sftp.readlink("/upload/planted.csv.tmp")
            await sftp.put(str(local), "/upload/keep.csv.part")
            for dst in ("/ack/keep.csv", "/../keep.csv", "/upload/../../keep.csv", "/archive/received.csv"):
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.rename("/upload/keep.csv.part", dst)
            with pytest.raises(asyncssh.SFTPError):
                await sftp.remove("/ack/anything")
            assert "planted.csv.tmp" not in await sftp.listdir("/upload")

    run(go())
    assert secret.read_text() == "not for clients"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith("keep.csv")) == []
    assert (inbox / "demo" / "upload" / "keep.csv.part").exists()
    assert not (inbox / "demo" / "upload" / "link.csv").exists() and not (inbox / "demo" / "upload" / "sub").exists()


def test_second_client_cannot_read_first_clients_acks(server: ServerThread, keys: dict[str, ClientKey],
                                                      tmp_path: Path) -> None:
    out = openssh_batch(server.port, keys["demo"].private, "demo",
                        [f"put {ROOT / 'examples' / 'demo.csv'} /upload/demo.csv"], tmp_path / "kh")
    assert out.returncode == 0, out.stderr
    wait_for("the ack", _ack(server, "demo", "demo.csv").exists)
    for path in ("/ack/demo.csv.ack.csv", "/../demo/ack/demo.csv.ack.csv", "../../demo/ack/demo.csv.ack.csv"):
        got = openssh_batch(server.port, keys["acme"].private, "acme", [f"get {path} {tmp_path / 'theirs'}"],
                            tmp_path / "kh")
        assert got.returncode != 0 and not (tmp_path / "theirs").exists()
    # acme's key does not open demo's login either
    wrong = openssh_batch(server.port, keys["acme"].private, "demo", ["ls /ack"], tmp_path / "kh")
    assert wrong.returncode != 0 and "demo.csv" not in wrong.stdout


def test_wrong_key_is_refused_and_failures_are_rate_limited(server: ServerThread, keys: dict[str, ClientKey],
                                                            tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stranger = make_key(tmp_path / "other", "stranger")

    async def login(key: Path, user: str) -> bool:
        try:
            async with server.connect(key, user) as conn, conn.start_sftp_client() as sftp:
                await sftp.listdir("/")
                return True
        except asyncssh.PermissionDenied:
            return False

    assert run(login(keys["demo"].private, "demo"))
    assert not run(login(stranger.private, "demo"))
    assert not run(login(stranger.private, "nobody"))
    assert not run(login(stranger.private, "acme"))
    # three failures from this address: now even the right key is refused for a while (the server
    # counts a failure when the failed connection is gone, which may trail the client by a moment)
    wait_for("logins from this address to be refused", lambda: not run(login(keys["demo"].private, "demo")))
    assert "sftp.login_blocked" in caplog.text and stranger.public_line.split()[1] not in caplog.text


def test_password_login_with_scrypt_hash(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> None:
    from gateway.crypto.passwords import hash_password
    app = _app(tmp_path, db_url, keys, acme={"password_hash": hash_password("a long passphrase 42")})
    try:
        with ServerThread(app) as srv:
            async def login(password: str) -> list[str]:
                async with srv.connect(None, "acme", password=password, preferred_auth="password") as conn, \
                        conn.start_sftp_client() as sftp:
                    return sorted(await sftp.listdir("/upload"))

            assert run(login("a long passphrase 42")) == [".", ".."]
            with pytest.raises(asyncssh.PermissionDenied):
                run(login("wrong"))
    finally:
        app.close()


def test_overwrite_while_processing_is_refused_and_limits_hold(tmp_path: Path, db_url: str,
                                                               keys: dict[str, ClientKey]) -> None:
    app = _app(tmp_path, db_url, keys, demo={"max_file_bytes": 5000}, acme={"quota_bytes": 3000})
    try:
        with ServerThread(app) as srv:
            small, big = client_csv(tmp_path / "s.csv", 3, "S"), client_csv(tmp_path / "b.csv", 100, "B")
            upload = app.config.inbox_dir / "demo" / "upload"
            upload.mkdir(parents=True, exist_ok=True)
            shutil.copy(small, upload / "busy.csv.part")
            srv.book.begin_write("demo", "busy.csv")  # as if an upload finished and ingest has it now
            shutil.copy(small, upload / "busy.csv")
            srv.book.end_write("demo", "busy.csv", complete=False)
            srv.book.set_complete("demo", "busy.csv")
            assert srv.book.start_processing("demo", "busy.csv")

            async def go() -> None:
                async with srv.connect(keys["demo"].private, "demo") as conn, conn.start_sftp_client() as sftp:
                    for attempt in (sftp.put(str(small), "/upload/busy.csv"), sftp.remove("/upload/busy.csv"),
                                    sftp.posix_rename("/upload/busy.csv.part", "/upload/busy.csv")):
                        with pytest.raises(asyncssh.SFTPFailure, match="being processed"):
                            await attempt
                    with pytest.raises(asyncssh.SFTPFailure, match="too large"):
                        await sftp.put(str(big), "/upload/b.csv")
                async with srv.connect(keys["acme"].private, "acme") as conn, conn.start_sftp_client() as sftp:
                    with pytest.raises(asyncssh.SFTPFailure, match="quota"):
                        await sftp.put(str(big), "/upload/b.csv")

            run(go())
            assert (upload / "busy.csv").read_bytes() == small.read_bytes()
    finally:
        app.close()


def _scp(port: int, key: Path, src: Path, target: str, known: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["scp", "-O", "-i", str(key), "-P", str(port), "-o", "StrictHostKeyChecking=accept-new",
                           "-o", f"UserKnownHostsFile={known}", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                           str(src), f"demo@127.0.0.1:{target}"], capture_output=True, text=True, timeout=60)


def test_scp_is_off_by_default(server: ServerThread, keys: dict[str, ClientKey], tmp_path: Path) -> None:
    src = client_csv(tmp_path / "scp.csv", 2, "SCP")
    out = _scp(server.port, keys["demo"].private, src, "/upload/scp.csv", tmp_path / "kh")
    assert out.returncode != 0
    assert not (server.app.config.inbox_dir / "demo" / "upload" / "scp.csv").exists()


def test_scp_when_allowed_goes_through_the_same_jail(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> None:
    app = _app(tmp_path, db_url, keys, sftp={"allow_scp": True})
    try:
        with ServerThread(app) as srv:
            src = client_csv(tmp_path / "scp.csv", 3, "SCP")
            for target in ("/ack/scp.csv", "/../../scp.csv", "/upload/sub/scp.csv"):
                assert _scp(srv.port, keys["demo"].private, src, target, tmp_path / "kh").returncode != 0
            out = _scp(srv.port, keys["demo"].private, src, "/upload/scp.csv", tmp_path / "kh")
            assert out.returncode == 0, out.stderr
            ack = wait_for("the ack", lambda: _ack(srv, "demo", "scp.csv").exists() and _ack(srv, "demo", "scp.csv"))
            assert [r["outcome"] for r in _ack_rows(ack)] == ["accepted"] * 3
            assert not (tmp_path / "scp.csv.ack.csv").exists() and not (tmp_path.parent / "scp.csv").exists()
    finally:
        app.close()


def test_no_shell_exec_or_forwarding(server: ServerThread, keys: dict[str, ClientKey]) -> None:
    async def go() -> list[str]:
        refused = []
        async with server.connect(keys["demo"].private, "demo") as conn:
            for attempt in (conn.run("cat /etc/passwd", check=True, timeout=10),
                            conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", server.port)):
                try:
                    await attempt
                except asyncssh.Error as exc:
                    refused.append(type(exc).__name__)
        return refused

    assert len(run(go())) == 2


def test_bad_credentials_in_config_are_named(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> None:
    from gateway.errors import ConfigError
    for extra, where in (({"authorized_keys": ["ssh-ed25519 not-base64"]}, "clients.demo.sftp.authorized_keys[0]"),
                         ({"password_hash": "hunter2hunter2"}, "clients.demo.sftp.password_hash")):
        app = _app(tmp_path, db_url, keys, demo=extra)
        try:
            with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
                with ServerThread(app):
                    pass
        finally:
            app.close()


def test_openssh_put_preserving_times_and_rename_over_temp_name(server: ServerThread, keys: dict[str, ClientKey],
                                                                tmp_path: Path) -> None:
    src = client_csv(tmp_path / "p.csv", 2, "P")
    os.utime(src, (1_600_000_000, 1_600_000_000))
    out = openssh_batch(server.port, keys["demo"].private, "demo",
                        [f"put -p {src} /upload/.p.csv", "rename /upload/.p.csv /upload/p.csv"], tmp_path / "kh")
    assert out.returncode == 0, out.stderr
    ack = wait_for("the ack", lambda: _ack(server, "demo", "p.csv").exists() and _ack(server, "demo", "p.csv"))
    assert [r["outcome"] for r in _ack_rows(ack)] == ["accepted"] * 2
    assert not _ack(server, "demo", ".p.csv").exists()
