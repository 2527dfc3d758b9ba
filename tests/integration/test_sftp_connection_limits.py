"""Connections are file descriptors: strangers that connect and say nothing, and one client opening many,
are bounded, so a flood cannot use up the process's descriptors (1,100 silent connections once made the
inbox watcher, the database and the listeners fail until `serve` gave up)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.sftp_support import ClientKey, ServerThread, sftp_server, make_key, sftp_clients_config


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ClientKey]:
    return {"demo": make_key(tmp_path / "client-keys", "demo")}


@pytest.fixture
def server(tmp_path: Path, keys: dict[str, ClientKey]) -> Iterator[ServerThread]:
    with sftp_server(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", sftp_clients_config(keys),
                     max_unauthenticated_per_address=3, max_connections_per_client=2) as srv:
        yield srv


def _closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    """Whether the server closes ``sock`` (after its greeting, if any) within the time."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True
    return False


def test_silent_connections_from_one_address_and_one_clients_connections_are_bounded(
        server: ServerThread, keys: dict[str, ClientKey]) -> None:
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        assert [_closed_by_server(s, 1.0) for s in silent[:3]] == [False] * 3  # waiting for their login
        assert all(_closed_by_server(s) for s in silent[3:])  # over the bound: closed at once
    finally:
        for s in silent:
            s.close()

    async def logins() -> list[str]:
        outcome = []
        conns = []
        try:
            for _ in range(3):
                try:
                    conn = await server.connect(keys["demo"].private, "demo")
                    conns.append(conn)
                    async with conn.start_sftp_client() as sftp:
                        await sftp.listdir("/upload")
                    outcome.append("ok")
                except (asyncssh.Error, OSError) as exc:
                    outcome.append(type(exc).__name__)
            conns.pop(0).close()  # one of the client's connections ends: a new one may come in
            await asyncio.sleep(0.2)
            conn = await server.connect(keys["demo"].private, "demo")
            conns.append(conn)
            async with conn.start_sftp_client() as sftp:
                await sftp.listdir("/upload")
            outcome.append("ok")
        finally:
            for c in conns:
                c.close()
        return outcome

    result = asyncio.run(logins())
    assert result[:2] == ["ok", "ok"] and result[2] != "ok" and result[3] == "ok", result
