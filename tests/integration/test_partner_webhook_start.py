"""Each partner's webhook listener starts on its own and, until it listens, is a failing task, retried.

Before, ``serve`` started every listener in one go: the first that could not listen (its address in use by another
program) left the partners after it without a listener too, said once in the log and never tried again: their
pushed status updates were refused for good while health said ok. Real listeners on 127.0.0.1, the supervisor
``serve`` runs them under.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.entrypoints.partner_tasks import PartnerTasks
from gateway.entrypoints.supervisor import Supervisor
from gateway.services.keys import init_keys
from gateway.services.partner_overview import overview
from tests.conftest import write_config


def _partner(name: str, listen: str) -> dict[str, object]:
    return {"adapter": "directory", "certificate": f"var/keys/partners/{name}.crt",
            "options": {"path": f"var/partners/{name}"},
            "webhook": {"listen": listen, "secret_env": "HOOK_START_SECRET"}}


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A port another program listens on."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: socket.socket) -> Iterator[App]:
    monkeypatch.setenv("HOOK_START_SECRET", "s3cret")
    port = taken.getsockname()[1]
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", partners={
        "a-agency": _partner("a-agency", f"127.0.0.1:{port}"), "b-agency": _partner("b-agency", "127.0.0.1:0")})
    init_keys(load_config(cfg))
    gateway = build_app(cfg, migrate=True)
    yield gateway
    gateway.close()


async def _until(what: str, check: "object", seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.02)


def test_one_partners_listener_that_cannot_listen_keeps_no_other_from_starting_and_is_retried(
        app: App, taken: socket.socket) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.05, backoff_max=0.2)
        tasks = PartnerTasks(app, sup)
        try:
            await tasks.start()
            await _until("b-agency's listener listens", lambda: len(tasks.servers) == 1)
            await _until("a-agency's listener shows as failing",
                         lambda: sup.health["webhook:a-agency"].consecutive >= 1)
            [b] = tasks.servers
            reader, writer = await asyncio.open_connection("127.0.0.1", b.sockets[0].getsockname()[1])
            writer.write(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]")  # unsigned: refused, but answered
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 30)).split()[1] == b"401"
            writer.close()
            # the operator's view of serve's partner tasks names it, with why
            states = {t.name: t for t in overview(app, sup.health).tasks}
            assert not states["webhook:a-agency"].ok and states["webhook:b-agency"].ok
            assert "address already in use" in str(states["webhook:a-agency"].last_error).lower()
            taken.close()  # the other program is gone: the listener starts at its next try, without a restart
            await _until("a-agency's listener listens", lambda: len(tasks.servers) == 2)
            assert sup.health["webhook:a-agency"].consecutive == 0
        finally:
            stop.set()
            await sup.join(10)
            await tasks.close()
    asyncio.run(run())
