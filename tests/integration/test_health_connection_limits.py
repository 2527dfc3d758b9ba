"""The health listener keeps a bounded number of connections: idle connections (each held up to 10 s for its
request line) over ``health.max_connections_per_address`` are closed as they arrive, so a flood of them cannot
use up serve's descriptors, and probes are answered again once the flood lets go. Real sockets on loopback
against the real listener; every wait is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.bootstrap import build_app
from gateway.config import HealthConfig, load_config
from gateway.entrypoints.health import HealthServer
from gateway.entrypoints.supervisor import Supervisor
from gateway.services.keys import init_keys
from tests.conftest import write_config

PER_ADDRESS = HealthConfig().max_connections_per_address


async def _read(reader: asyncio.StreamReader, timeout: float = 30) -> bytes:
    """All the server sends until it closes (b"" for a close without an answer, a reset included)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=timeout)
    except ConnectionResetError:
        return b""


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
    except ConnectionResetError:
        return b""
    answer = await _read(reader)
    writer.close()
    return answer


def test_idle_connections_over_the_bound_are_closed_and_probes_come_back(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}")
    init_keys(load_config(path))
    app = build_app(path, migrate=True)

    async def run() -> tuple[list[bytes], int, bytes, bytes]:
        health = HealthServer(app, Supervisor(asyncio.Event()), lambda: [])
        await health.start()
        assert health.server is not None
        port = int(health.server.sockets[0].getsockname()[1])
        flood = [await asyncio.open_connection("127.0.0.1", port) for _ in range(PER_ADDRESS + 10)]
        try:
            # The ten over the bound are closed at once (not after the 10 s the listener waits for a request)
            extra = [await _read(reader, timeout=5) for reader, _ in flood[PER_ADDRESS:]]
            held = health.limits.open
            refused_probe = await _get(port, "/healthz")  # the address has its share: closed unanswered
        finally:
            for _, writer in flood:
                writer.close()
        for _ in range(100):  # the listener sees the flood's connections end (bounded)
            if health.limits.open == 0:
                break
            await asyncio.sleep(0.05)
        probe = await _get(port, "/healthz")
        await health.close()
        return extra, held, refused_probe, probe

    try:
        extra, held, refused_probe, probe = asyncio.run(run())
    finally:
        app.close()
    assert extra == [b""] * 10
    assert held == PER_ADDRESS
    assert refused_probe == b""
    assert probe.startswith(b"HTTP/1.1 200 OK"), probe
