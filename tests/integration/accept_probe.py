"""Run as a child by test_problem_episodes: the console's accept loop out of descriptors, then with descriptors again
(the limit is lowered in this process only)."""
import asyncio
import logging
import os
import resource
import socket
import ssl
import sys

from gateway.entrypoints.connection_limits import ConnectionLimits
from gateway.entrypoints.web.connections import Listener, listening_socket

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")


async def main() -> None:
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    listener = Listener(sock, ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), ConnectionLimits("web", 100, 100),
                        lambda release: asyncio.Protocol(), 1.0)
    task = asyncio.create_task(listener.serve())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    os.close(fillers.pop())
    client = socket.socket()
    client.setblocking(False)
    try:
        client.connect(("127.0.0.1", port))  # waits in the backlog: accept has no descriptor to give it
    except BlockingIOError:
        pass
    for _ in range(10):  # ten looks of the accept loop (0.1 s apart), all failing
        await asyncio.sleep(0.1)
    for fd in fillers:
        os.close(fd)
    for _ in range(100):
        await asyncio.sleep(0.05)
        if listener.limits.open:  # accepted
            break
    print("RESULT accepted=%d" % listener.limits.open, flush=True)
    client.close()
    task.cancel()
    listener.close()


asyncio.run(main())
