"""SFTP clients that misbehave at the session level against a running `gateway serve` (descriptor limit 1024):
one connection opening file after file and listing after listing, an upload that is never closed, the same
name uploaded by two connections at once, links and deep paths. Another client's upload, /healthz and SIGTERM
keep working throughout.

Before, one connection held 997 open files (SFTP names no limit, asyncssh neither): /healthz and every
front stopped accepting, and the inbox watcher failed, until that client let go. A listing read in part
kept its folder open (a descriptor per listing) until the client closed it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncssh

from tests.conftest import ROOT
from tests.e2e.test_serve_fronts_flood import STOP_WITHIN, Running, honest_get, running, start  # noqa: F401
from tests.integration.soap.conftest import client_config
from tests.sftp_support import make_key, openssh_batch, wait_for

DEMO = (ROOT / "examples" / "demo.csv").read_bytes()


def submissions(r: Running) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "gateway.entrypoints.cli", "--config", str(r.base / "gateway.yaml"),
                          "submissions", "list", "--json"], capture_output=True, text=True, timeout=60, cwd=r.base)
    assert out.returncode == 0, out.stderr
    listed: list[dict[str, object]] = json.loads(out.stdout)
    return listed


def test_sftp_clients_holding_files_listings_and_unfinished_uploads(running: list[Running], tmp_path: Path) -> None:
    keys = {cid: make_key(tmp_path / "client-keys", cid) for cid in ("demo", "other")}
    clients = client_config()
    for cid, key in keys.items():
        clients[cid]["sftp"] = {"authorized_keys": [key.public_line]}
    r = start(tmp_path, clients=clients, sftp={"enabled": True, "port": 0})
    running.append(r)
    acks = r.base / "inbox" / "demo" / "ack"
    acks.mkdir(parents=True, exist_ok=True)
    for i in range(300):  # a busy client's ack folder: more than one read of a listing (128 names)
        (acks / f"old-{i:03d}.csv.ack.csv").write_text("row;outcome\n")
    other_file = tmp_path / "other.csv"
    other_file.write_bytes(DEMO)

    async def connect() -> asyncssh.SSHClientConnection:
        return await asyncssh.connect("127.0.0.1", r.ports["sftp"], username="demo", known_hosts=None,
                                      client_keys=[asyncssh.read_private_key(str(keys["demo"].private))])

    async def scenario() -> None:
        conn, second = await connect(), await connect()
        sftp, sftp2 = await conn.start_sftp_client(), await second.start_sftp_client()
        # an upload that is never closed, and the same name from a second connection meanwhile
        slow = await sftp.open("/upload/slow.csv", "wb")
        await slow.write(DEMO[: len(DEMO) // 2])
        twice = await sftp.open("/upload/twice.csv", "wb")
        try:
            await sftp2.open("/upload/twice.csv", "wb")
            raise AssertionError("a name being uploaded was opened by a second connection")
        except asyncssh.SFTPFailure as exc:
            assert exc.reason == "refused: twice.csv is being uploaded", exc.reason
        await twice.write(DEMO)
        await twice.close()
        wait_ack = acks / "twice.csv.ack.csv"
        await asyncio.to_thread(wait_for, "the ack of the one upload of twice.csv", wait_ack.exists, 60)

        # files opened one after the other on one connection, never closed
        held: list[asyncssh.SFTPClientFile] = []
        refusal = ""
        for _ in range(1100):
            try:
                held.append(await sftp.open("/ack/old-000.csv.ack.csv", "rb"))
            except asyncssh.SFTPFailure as exc:
                refusal = exc.reason
                break
        assert len(held) == 63 and refusal.startswith("too many open files: at most 64"), (len(held), refusal)
        assert await asyncio.to_thread(honest_get, r, "health") == 200
        out = await asyncio.to_thread(openssh_batch, r.ports["sftp"], keys["other"].private, "other",
                                      [f"put {other_file} /upload/other.csv"], tmp_path / "known_hosts")
        assert out.returncode == 0, out.stderr
        for f in held:
            await f.close()

        # listings opened and read in part (the first 128 names), never closed: the same bound
        handler = sftp2._handler  # asyncssh's request layer: opendir/readdir without the client's closedir
        listings, refusal = 0, ""
        for _ in range(1100):
            try:
                handle = await handler.opendir(b"/ack")
                await handler.readdir(handle)
                listings += 1
            except asyncssh.SFTPFailure as exc:
                refusal = exc.reason
                break
        assert listings == 63 and refusal.startswith("too many open files"), (listings, refusal)
        assert await asyncio.to_thread(honest_get, r, "health") == 200

        # no links, no folders, nothing deeper than a folder
        for attempt in (sftp.symlink("/ack/old-001.csv.ack.csv", "/upload/link"), sftp.mkdir("/upload/sub"),
                        sftp.stat("/upload/" + "a/" * 500 + "x"), sftp.readlink("/upload/slow.csv")):
            try:
                await attempt
                raise AssertionError("allowed")
            except (asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile):
                pass
        second.close()
        conn.abort()  # the connection breaks off with slow.csv still open

    asyncio.run(scenario())
    ack = acks / "slow.csv.ack.csv"
    wait_for("the unfinished upload's ack", ack.exists, 60)
    assert "incomplete" in ack.read_text(encoding="utf-8")
    wait_for("the other client's ack", (r.base / "inbox" / "other" / "ack" / "other.csv.ack.csv").exists, 60)
    names = sorted(str(s["filename"]) for s in submissions(r))
    assert names == ["other.csv", "twice.csv"], names  # the half-written file never reached intake

    # SIGTERM while a client holds an upload open
    async def hold_and_stop() -> float:
        conn = await connect()
        sftp = await conn.start_sftp_client()
        f = await sftp.open("/upload/held.csv", "wb")
        await f.write(DEMO[:100])
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(r.proc.wait, 60)
        conn.abort()
        return time.monotonic() - t0
    took = asyncio.run(hold_and_stop())
    assert r.proc.returncode == 0 and took < STOP_WITHIN, (r.proc.returncode, took)
    log = r.text()
    assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]
    assert "sftp.handles_refused client=demo" in log
