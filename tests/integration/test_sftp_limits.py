"""Uploads over the per-file limit or the quota: refused whole, discarded, acked, never ingested."""

from __future__ import annotations

import asyncio
import csv
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gateway.bootstrap import App
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.sftp_support import ClientKey, ServerThread, sftp_server, client_csv, make_key, openssh_batch, sftp_clients_config
from tests.support import wait_for

FILE_LIMIT = 614_400  # "demo": 600 KiB per file
QUOTA = 400_000  # "acme": everything in /upload together
SMALL_LIMIT = 60_000  # "shop": per file, for sparse and append writes


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ClientKey]:
    return {cid: make_key(tmp_path / "client-keys", cid) for cid in ("demo", "acme", "shop")}


@pytest.fixture
def server(tmp_path: Path, db_url: str, keys: dict[str, ClientKey]) -> Iterator[ServerThread]:
    clients = sftp_clients_config(keys, demo={"max_file_bytes": FILE_LIMIT}, acme={"quota_bytes": QUOTA},
                                  shop={"max_file_bytes": SMALL_LIMIT})
    with sftp_server(tmp_path, db_url, clients) as srv:
        yield srv


def _upload(srv: ServerThread, client: str) -> Path:
    return srv.app.config.inbox_dir / client / "upload"


def _ack(srv: ServerThread, client: str, name: str) -> Path:
    return srv.app.config.inbox_dir / client / "ack" / f"{name}.ack.csv"


def _ack_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def _wait_ack(srv: ServerThread, client: str, name: str, outcome: str) -> list[dict[str, str]]:
    ack = _ack(srv, client, name)
    return wait_for(f"the {outcome} ack of {name}", lambda: [
        r for r in _ack_rows(ack) if r["outcome"] == outcome] if ack.exists() else None)


def _submissions(app: App, client: str) -> list[Any]:
    with read_tx(app.engine) as conn:
        return sub_store.listing(conn, client_id=client, limit=1000)


def test_openssh_put_over_the_file_limit_is_refused_and_discarded(server: ServerThread, keys: dict[str, ClientKey],
                                                                  tmp_path: Path) -> None:
    (tmp_path / "big").mkdir()
    (tmp_path / "good").mkdir()
    big = client_csv(tmp_path / "big" / "claims.csv", 4140, "BIG")  # ~716 KB, 4,140 rows
    assert big.stat().st_size > FILE_LIMIT
    out = openssh_batch(server.port, keys["demo"].private, "demo", [f"put {big} /upload/claims.csv"],
                        tmp_path / "kh")
    assert out.returncode != 0
    failed = _wait_ack(server, "demo", "claims.csv", "failed")
    assert len(failed) == 1 and failed[0]["codes"] == "file_too_large"
    assert f"exceed the limit of {FILE_LIMIT} bytes per file" in failed[0]["messages"]
    assert list(_upload(server, "demo").iterdir()) == []

    # The same name again, now within the limit: a fresh start, ingested whole; the refused bytes never were.
    good = client_csv(tmp_path / "good" / "claims.csv", 3000, "GOOD")
    out = openssh_batch(server.port, keys["demo"].private, "demo", [f"put {good} /upload/claims.csv"],
                        tmp_path / "kh")
    assert out.returncode == 0, out.stderr
    accepted = _wait_ack(server, "demo", "claims.csv", "accepted")
    assert len(accepted) == 3000 and {list(r.values())[1][:4] for r in accepted} == {"GOOD"}
    assert not [r for r in _ack_rows(_ack(server, "demo", "claims.csv")) if r["outcome"] != "accepted"]
    subs = _submissions(server.app, "demo")
    assert [(s["filename"], s["rows"], s["status"]) for s in subs] == [("claims.csv", 3000, "completed")]


def test_concurrent_handles_share_the_quota(server: ServerThread, keys: dict[str, ClientKey], tmp_path: Path) -> None:
    upload = _upload(server, "acme")
    early = client_csv(tmp_path / "early.csv", 290, "EARLY")  # ~50 KB, uploaded first under a temporary name
    files = {f"f{i}.csv": client_csv(tmp_path / f"f{i}.csv", 700, f"F{i}").read_bytes() for i in range(5)}
    each = len(files["f0.csv"])
    room = QUOTA - early.stat().st_size
    assert 2 * each <= room < 3 * each  # at most two of the five fit beside the early file
    peak = [0]
    writing = threading.Event()

    def scan() -> dict[str, int]:
        sizes: dict[str, int] = {}
        with os.scandir(upload) as entries:
            for e in entries:
                try:
                    sizes[e.name] = e.stat().st_size
                except FileNotFoundError:  # a refused upload, deleted between listing and looking
                    pass
        return sizes

    def held() -> int:
        # A folder cannot be read atomically: a refused file counted just before its deletion and a
        # neighbour counted just after it took the freed space would add up to more than was ever there.
        # Each file's smaller size over two scans in a row never overstates what the folder held.
        first, second = scan(), scan()
        return sum(min(size, second.get(name, 0)) for name, size in first.items())

    def sample() -> None:  # what /upload holds while the five uploads write
        while writing.is_set():
            peak[0] = max(peak[0], held())

    async def write_all(sftp: asyncssh.SFTPClient, names: list[str]) -> dict[str, tuple[Any, str]]:
        handles = {n: await sftp.open(f"/upload/{n}", "wb") for n in names}  # all open before any byte

        async def fill(name: str) -> str:
            data, f = files[name], handles[name]
            try:
                for at in range(0, len(data), 8192):
                    await f.write(data[at:at + 8192], at)
            except asyncssh.SFTPFailure as exc:
                return str(exc)
            return "ok"

        results = await asyncio.gather(*(fill(n) for n in names))
        return {n: (handles[n], r) for n, r in zip(names, results)}

    async def go() -> dict[str, str]:
        async with server.connect(keys["acme"].private, "acme") as one, one.start_sftp_client() as s1, \
                server.connect(keys["acme"].private, "acme") as two, two.start_sftp_client() as s2:
            await s1.put(str(early), "/upload/early.csv.part")
            writing.set()
            sampler = threading.Thread(target=sample)
            sampler.start()
            try:  # two sessions, five handles open at once: one quota for all of them
                got = await asyncio.gather(write_all(s1, ["f0.csv", "f1.csv", "f2.csv"]),
                                           write_all(s2, ["f3.csv", "f4.csv"]))
            finally:
                writing.clear()
                sampler.join()
            results = {**got[0], **got[1]}
            assert held() <= QUOTA
            for handle, result in results.values():
                if result == "ok":
                    await handle.close()
                else:  # a client that closes normally after the refusal: still refused, nothing kept
                    with pytest.raises(asyncssh.SFTPFailure, match="quota exceeded"):
                        await handle.close()
            await s1.rename("/upload/early.csv.part", "/upload/early.csv")
            return {n: r for n, (_, r) in results.items()}

    outcome = asyncio.run(go())
    refused = sorted(n for n, r in outcome.items() if r != "ok")
    accepted = sorted(n for n, r in outcome.items() if r == "ok")
    assert 1 <= len(accepted) <= 2 and len(refused) == 5 - len(accepted)
    assert 0 < peak[0] <= QUOTA
    for name in refused:
        assert outcome[name].startswith("quota exceeded: ") and f"the quota of {QUOTA} bytes" in outcome[name]
        [line] = _wait_ack(server, "acme", name, "failed")
        assert line["codes"] == "quota_exceeded" and f"the quota of {QUOTA} bytes" in line["messages"]
        assert not (upload / name).exists()
    for name in accepted:
        assert len(_wait_ack(server, "acme", name, "accepted")) == 700
    assert len(_wait_ack(server, "acme", "early.csv", "accepted")) == 290  # the earlier file, whole

    def finished() -> list[Any] | None:
        subs = _submissions(server.app, "acme")
        return subs if all(s["status"] == "completed" for s in subs) else None

    subs = wait_for("the submissions to finish", finished)
    assert sorted((s["filename"], s["rows"]) for s in subs) == sorted(
        [("early.csv", 290)] + [(n, 700) for n in accepted])


def test_sparse_and_append_writes_and_a_fresh_start(server: ServerThread, keys: dict[str, ClientKey],
                                                    tmp_path: Path) -> None:
    upload = _upload(server, "shop")
    part = client_csv(tmp_path / "part.csv", 200, "APP").read_bytes()  # ~34 KB
    small = client_csv(tmp_path / "small.csv", 20, "SMALL").read_bytes()

    async def go() -> None:
        async with server.connect(keys["shop"].private, "shop") as conn, conn.start_sftp_client() as sftp:
            # A write at 10 GiB is refused before the file grows.
            f = await sftp.open("/upload/sparse.csv", "wb")
            with pytest.raises(asyncssh.SFTPFailure, match=f"file too large: {10 * 2**30 + 1} bytes would exceed "
                                                            f"the limit of {SMALL_LIMIT} bytes per file"):
                await f.write(b"x", 10 * 2**30)
            assert not (upload / "sparse.csv").exists()
            with pytest.raises(asyncssh.SFTPFailure, match="file too large"):
                await f.write(b"x", 0)  # the handle stays refused
            with pytest.raises(asyncssh.SFTPFailure, match="file too large"):
                await f.close()
            [line] = _ack_rows(_ack(server, "shop", "sparse.csv"))
            assert (line["outcome"], line["codes"]) == ("failed", "file_too_large")

            # The same name again: the refusal's ack goes as the new upload begins.
            f = await sftp.open("/upload/sparse.csv", "wb")
            assert not _ack(server, "shop", "sparse.csv").exists()
            await f.write(small, 0)
            await f.close()

            # Append: the kernel writes at the end whatever the offset, and so does the limit check.
            await sftp.put(str(tmp_path / "part.csv"), "/upload/app.csv.part")
            async with sftp.open("/upload/app.csv.part", "ab") as f:
                await f.write(b"", 0)
            f = await sftp.open("/upload/app.csv.part", "ab")
            with pytest.raises(asyncssh.SFTPFailure, match=f"{2 * len(part)} bytes would exceed"):
                await f.write(part, 0)
            with pytest.raises(asyncssh.SFTPFailure):
                await f.close()
            assert not (upload / "app.csv.part").exists()

    asyncio.run(go())
    assert len(_wait_ack(server, "shop", "sparse.csv", "accepted")) == 20
    [line] = _ack_rows(_ack(server, "shop", "app.csv.part"))
    assert line["codes"] == "file_too_large" and f"limit of {SMALL_LIMIT} bytes" in line["messages"]
    # the ack file is renamed into place a moment before the submission's final counts commit
    wait_for("the submission's counts", lambda: [(s["filename"], s["rows"]) for s in _submissions(server.app, "shop")]
             == [("sparse.csv", 20)])
    # the ack is written before the ingested upload is removed: nothing of either file stays behind
    wait_for("the upload folder to empty", lambda: not list(upload.iterdir()))
