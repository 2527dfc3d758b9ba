"""The webhook a partner pushes its updates to, against a sender that misbehaves below HTTP: a request dripped
or never finished, an endless stream of header lines. The real listener ``serve`` starts, on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints import partner_tasks
from gateway.entrypoints.supervisor import Supervisor
from gateway.services.keys import init_keys
from tests.conftest import write_config


@pytest.fixture
def hooked(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("HOSTILE_WEBHOOK_SECRET", "s3cret")
    cfg = write_config(tmp_path, db_url, partners={"demo-agency": {
        "adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
        "options": {"path": "var/partners/demo-agency"},
        "webhook": {"listen": "127.0.0.1:0", "secret_env": "HOSTILE_WEBHOOK_SECRET"}}})
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    yield app
    app.close()


@asynccontextmanager
async def webhook(app: App) -> AsyncIterator[int]:
    server = await partner_tasks._webhook(app, Supervisor(asyncio.Event()), "demo-agency",
                                          app.config.partners["demo-agency"])
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _status_of(reader: asyncio.StreamReader) -> int:
    return int((await reader.readline()).split()[1])


def test_a_request_never_finished_is_answered_408_and_closed(hooked: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender opens, sends half a request line, and stops (or drips it): the listener answers 408 and closes
    the connection by itself. Before, the connection (and its coroutine) was held for ever."""
    monkeypatch.setattr(partner_tasks, "READ_SECONDS", 0.5, raising=False)

    async def run() -> int:
        async with webhook(hooked) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /upd")
            await writer.drain()
            status = await asyncio.wait_for(_status_of(reader), 30)
            writer.close()
            return status
    assert asyncio.run(run()) == 408


def test_endless_header_lines_are_refused(hooked: App) -> None:
    async def run() -> int:
        async with webhook(hooked) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST / HTTP/1.1\r\n" + b"X-Padding: 1\r\n" * 500)
            await writer.drain()
            status = await asyncio.wait_for(_status_of(reader), 30)
            writer.close()
            return status
    assert asyncio.run(run()) == 431


def test_silent_connections_of_one_sender_are_bounded(hooked: App) -> None:
    """A sender that opens connection after connection and says nothing holds at most its share of them (each a
    descriptor of serve, shared with the database and the other fronts); the ones over the bound are closed as
    they arrive. Before, every one was kept until its read timeout, and a thousand used up serve's descriptors."""
    async def run() -> tuple[list[bool], list[bool]]:
        async def eof(reader: asyncio.StreamReader, wait: float) -> bool:
            try:  # a connection closed by the listener reads EOF at once; a held one times out
                return await asyncio.wait_for(reader.read(1), wait) == b""
            except TimeoutError:
                return False
        bound = partner_tasks.MAX_CONNECTIONS_PER_ADDRESS
        async with webhook(hooked) as port:
            opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(bound + 5)]
            over = await asyncio.gather(*(eof(r, 10.0) for r, _ in opened[bound:]))
            held = await asyncio.gather(*(eof(r, 0.5) for r, _ in opened[:bound]))
            for _, writer in opened:
                writer.close()
            for _, writer in opened:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            # the listener answers each held connection once it ends: let those handlers finish in this loop
            for _ in range(500):
                if len(asyncio.all_tasks()) == 1:
                    break
                await asyncio.sleep(0.02)
            return list(over), list(held)
    over, held = asyncio.run(run())
    assert all(over) and not any(held)
