"""A partner's webhook sender that resets its connection (RST) before the answer is written: the listener
drops the answer quietly. Before, ``writer.drain()`` raised the reset out of the connection's handler, and
asyncio handed it to serve's loop exception handler: an ERROR line (supervisor.task_failed task=loop) for
what is only a peer that went away."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from gateway.bootstrap import App
from tests.integration.test_partner_hostile_webhook import hooked, webhook  # noqa: F401


def test_a_sender_that_resets_is_no_loop_error(hooked: App) -> None:  # noqa: F811
    async def run() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        async with webhook(hooked) as port:
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n[")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # RST: the body never comes, nor is the answer read
            # a sound request after them: answered once the listener has taken the connections before it
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            assert int((await asyncio.wait_for(reader.readline(), 30)).split()[1]) == 405
            writer.close()
            me = asyncio.current_task()
            deadline = loop.time() + 30
            # every connection's handler has ended (and its done callback has run)
            while [t for t in asyncio.all_tasks() if t is not me] and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert not [t for t in asyncio.all_tasks() if t is not me]
            await asyncio.sleep(0)
        return errors
    errors = asyncio.run(run())
    assert errors == [], [str(e.get("exception") or e.get("message")) for e in errors]
