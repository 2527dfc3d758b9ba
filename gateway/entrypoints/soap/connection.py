"""Connections of the SOAP server that a slow or silent peer cannot hold a worker thread with.

cheroot does the TLS handshake in its one accepting thread (a silent peer stalled every other client
for the socket timeout) and lets a worker block on a request header that trickles in (twenty such
peers took every worker). Here the handshake and the header are taken without blocking: a worker
reads what is there and hands the connection back to cheroot's selector until more arrives, so a
worker only ever waits on a peer whose complete header is in; and everything before the header's end
must arrive within ``header_timeout`` of the connection (or of its previous answer), else it is closed.
The body is read blocking, each read within ``read_timeout`` and the whole body within
``request_timeout`` (a per-request deadline, so a trickle of bytes cannot stretch it). The connections
open at once are bounded per peer address and in all (``connection_limits``): one over a bound is closed
by the first worker that sees it, before its handshake. And since a worker waits for a body still on its
way, one address has at most ``soap.max_body_waits_per_address`` (and half the workers) requests whose body is
still coming in workers at once; a request holds that slot until its body is in, not while it is processed. A
further one waits for its body in the selector too (up to ``PRE_READ`` bytes), or, with a larger body, for a
slot of its address outside the selector (``waiting_room.py``), within the header's deadline; it is then served,
or answered ``Server.Busy`` (503, Retry-After), its body unread. Requests whose body is in with the header are
not counted. Before, four connections sending a body a byte at a time took all four workers of a server for
minutes, the TLS handshakes of everyone else included.

``Expect: 100-continue`` (.NET's HttpWebRequest sends it with every POST): the client sends its header alone and
its body once it reads ``100 Continue``. cheroot would answer that as soon as it has read the header, before the
gate has looked at the request; here the line is taken out of the header and ``100 Continue`` is sent when the
gate first reads the body, so a request refused from its header (too large, wrong password, wrong media type)
gets its final answer instead and the connection is closed, its body never sent. When the address's slots are
taken, a body up to ``PRE_READ`` is asked for at once and read in the selector; a larger one waits for a slot.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter

from gateway.entrypoints.connection_limits import ConnectionLimits

if TYPE_CHECKING:
    from gateway.entrypoints.soap.waiting_room import WaitingRoom

ENV_CONNECTION = "gateway.connection"  # the GuardedConnection in the WSGI environ (to drop an unread body)
MAX_HEADER = 64 * 1024
PRE_READ = 256 * 1024  # body bytes waited for in the selector when the address has its share of workers
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*\r\n")
_EXPECT = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_WAIT = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """TLS whose handshake happens later, in a worker and without blocking (``GuardedConnection``)."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, Any]]:
        return self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True), {}


class DeadlineReader:
    """The read side of a connection, with the interface cheroot uses (read, readline, has_data)."""

    def __init__(self, sock: socket.socket, read_timeout: float) -> None:
        self.sock, self.read_timeout = sock, read_timeout
        self.buf, self.pos, self.bytes_read = bytearray(), 0, 0
        self.deadline = math.inf
        self.discarding = False  # the answer was given without the body: the rest is not read
        self.holding = False  # the header is in, the body is waited for in the selector
        # The client waits for 100 Continue before it sends the body: sent when the body is first read
        self.continue_owed = False
        # Bytes handed to cheroot, and where the current request's body starts and ends in that count
        self.taken = 0
        self.body_at = self.body_end = math.inf
        self.on_body: Callable[[], None] | None = None  # called once the body is read
        # cheroot's stop reads this of a worker still busy after its grace, then shuts the socket down so the
        # worker's read ends; without it the stop failed (AttributeError) and a worker waiting on a slow body
        # kept serve's process alive after SIGTERM until its read timed out (30 s)
        self.closed = False

    def header_complete(self) -> bool:
        return self.buf.find(b"\r\n\r\n", self.pos) >= 0

    def declared(self) -> int | None:
        """The (complete) header's body length; None when unknown (chunked)."""
        end = self.buf.find(b"\r\n\r\n", self.pos)
        head = bytes(self.buf[self.pos:end + 2]).lower()
        if b"\r\ntransfer-encoding:" in head:
            return None
        found = _LENGTH.search(head)
        return int(found.group(1)) if found else 0

    def body_missing(self) -> int | None:
        """Bytes of the (complete) header's body not in the buffer yet; None when unknown (chunked)."""
        length = self.declared()
        if length is None:
            return None
        return max(0, length - (len(self.buf) - self.buf.find(b"\r\n\r\n", self.pos) - 4))

    def take_expect(self) -> None:
        """Take ``Expect: 100-continue`` out of the (complete) header, so that cheroot does not answer it before
        the gate has seen the request; the client is then owed its 100 Continue (HTTP/1.1 only, RFC 9110 10.1.1)."""
        end = self.buf.find(b"\r\n\r\n", self.pos)
        found = _EXPECT.search(self.buf, self.pos, end + 2)
        if found is None:
            return
        first = bytes(self.buf[self.pos:self.buf.find(b"\r\n", self.pos)])
        del self.buf[found.start():found.end()]
        if first.endswith(b" HTTP/1.1") and self.body_missing() != 0:
            self.continue_owed = True

    def send_continue(self) -> bool:
        """Tell the client to send its body; False when the connection is gone."""
        self.continue_owed = False
        try:
            self.sock.settimeout(self.read_timeout)
            self.sock.sendall(CONTINUE)
        except OSError:
            return False
        return True

    def start_request(self, on_body: Callable[[], None] | None) -> None:
        """The (complete) header in the buffer is about to be handed to cheroot; ``on_body`` once its body is read."""
        end = self.buf.find(b"\r\n\r\n", self.pos)
        self.body_at = self.taken + end + 4 - self.pos
        length = self.declared()
        self.body_end = self.body_at + length if length is not None else math.inf
        self.on_body = on_body

    def end_request(self) -> None:
        self.continue_owed, self.on_body = False, None
        self.body_at = self.body_end = math.inf

    def has_data(self) -> bool:
        """Whether a request can be worked on without waiting (cheroot asks before selecting)."""
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        return (self.header_complete() and not self.holding) or pending > 0

    def gather(self, body: int = 0) -> bool:
        """Take whatever has arrived of the header (and ``body`` bytes after it), without waiting; False when the
        peer has closed."""
        self.sock.setblocking(False)
        try:
            while (len(self.buf) - self.pos < MAX_HEADER + body
                   and (not self.header_complete() or (body and self.body_missing() != 0))):
                try:
                    chunk = self.sock.recv(65536)
                except _WAIT:
                    return True
                if not chunk:
                    return False
                self.buf += chunk
            return True
        finally:
            self.sock.settimeout(self.read_timeout)

    def read(self, size: int | None = -1) -> bytes:
        if self.discarding:
            return b""
        self._at_body()
        want = math.inf if size is None or size < 0 else size
        out = bytearray()
        while len(out) < want:
            if self.pos < len(self.buf):
                take = int(min(want - len(out), len(self.buf) - self.pos))
                out += self.buf[self.pos:self.pos + take]
                self.pos += take
            elif not self._recv():
                break
        self._compact()
        self.bytes_read += len(out)
        self._taken(len(out))
        return bytes(out)

    def readline(self, size: int | None = -1) -> bytes:
        self._at_body()
        limit = math.inf if size is None or size < 0 else size
        while True:
            end = self.buf.find(b"\n", self.pos)
            have = len(self.buf) - self.pos
            if end >= 0 or have >= limit or not self._recv():
                stop = end + 1 if end >= 0 else len(self.buf)
                stop = int(min(stop, self.pos + limit))
                line = bytes(self.buf[self.pos:stop])
                self.pos = stop
                self._compact()
                self._taken(len(line))
                return line

    def close(self) -> None:
        self.buf, self.pos, self.closed = bytearray(), 0, True

    def _at_body(self) -> None:
        # The gate asks for the body: now the client that waits for it is told to send it (unless it already does)
        if self.continue_owed and self.taken >= self.body_at:
            self.continue_owed = False
            if self.pos == len(self.buf):  # a send that fails shows as the body's read failing
                self.send_continue()

    def _taken(self, n: int) -> None:
        self.taken += n
        if self.on_body is not None and self.taken >= self.body_end:
            on_body, self.on_body = self.on_body, None
            on_body()

    def _recv(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the request took longer than allowed")
        self.sock.settimeout(min(self.read_timeout, left))
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def _compact(self) -> None:
        if self.pos and self.pos >= len(self.buf) // 2:
            del self.buf[:self.pos]
            self.pos = 0


class GuardedConnection(HTTPConnection):
    """An HTTP connection that waits for its peer in the selector, never in a worker (see module doc)."""

    header_timeout, read_timeout, request_timeout = 10.0, 30.0, 300.0
    max_body: float = math.inf  # soap.max_request_bytes: a larger declared body is refused from the header
    limits: ConnectionLimits | None = None
    room: WaitingRoom | None = None
    _closed_in_handshake = False
    _counted = False  # the request holds one of its address's body-wait slots
    parked = False  # the request waits for such a slot in the room (the server's put_conn takes it there)

    def __init__(self, server: Any, sock: socket.socket, makefile: Any = None) -> None:
        super().__init__(server, sock, *([makefile] if makefile else []))
        self.rfile = DeadlineReader(sock, self.read_timeout)
        self._handshaken = not isinstance(sock, ssl.SSLSocket)
        self._since = time.monotonic()
        # cheroot hands a new connection to a worker at once: over a bound, that first turn closes it
        try:
            self._peer: str | None = str(sock.getpeername()[0])
        except OSError:  # already gone
            self._peer = None
        self._admitted = self._peer is not None and (self.limits is None or self.limits.admit(self._peer))

    def close(self) -> None:
        if self._admitted and self.limits is not None and self._peer is not None:
            self._admitted = False
            self.limits.release(self._peer)
        super().close()

    def discard_body(self) -> None:
        """The answer does not need the body: do not read it, and close after answering."""
        self.rfile.discarding = True

    def body_unasked(self) -> bool:
        """The client waits for 100 Continue and has not been told to send its body: nothing of it is on its way."""
        return bool(self.rfile.continue_owed)

    @property
    def deadline(self) -> float:
        """When a request whose header is in must have been taken up (monotonic clock)."""
        return self._since + self.header_timeout

    def communicate(self) -> bool:
        """Serve one request if its header is in; True hands the connection back to wait for more."""
        if not self._admitted:
            return False
        if time.monotonic() - self._since > self.header_timeout:
            if self.rfile.holding:
                self._busy()
            return False
        if not self._handshaken and not self._handshake():
            return not self._closed_in_handshake
        if not self.rfile.header_complete():
            if not self.rfile.gather():
                return False
            if not self.rfile.header_complete() and len(self.rfile.buf) - self.rfile.pos < MAX_HEADER:
                return True
        self.rfile.take_expect()
        peer, limits, missing = self._peer, self.limits, self.rfile.body_missing()
        # A worker would wait for the body; not so for a client waiting for 100 Continue that the gate refuses
        # from the header for its size
        waits = missing != 0 and not (self.rfile.continue_owed and (self.rfile.declared() or 0) > self.max_body)
        if limits is not None and peer is not None and waits:
            self._counted = limits.enter(peer)
            if not self._counted:
                if missing is None or missing > PRE_READ:
                    self.rfile.holding = self.parked = True  # until a slot of the address frees (WaitingRoom)
                    return True
                if self.rfile.continue_owed and not self.rfile.send_continue():
                    return False
                self.rfile.holding = True
                if not self.rfile.gather(PRE_READ):
                    return False
                if self.rfile.body_missing() != 0:
                    return True  # back to the selector until more of the body comes
        self.rfile.holding = False
        self.ssl_env = {**(self.ssl_env or {}), ENV_CONNECTION: self}
        self.rfile.deadline = time.monotonic() + self.request_timeout
        self.rfile.start_request(self._leave if self._counted else None)
        try:
            keep = bool(super().communicate())  # type: ignore[no-untyped-call]
        finally:
            self.rfile.end_request()
            self.rfile.deadline = math.inf
            self._since = time.monotonic()
            self._leave()
        return keep and not self.rfile.discarding

    def _leave(self) -> None:
        """The request's body is in (or it is answered): its slot goes to the next request of the address."""
        if self._counted and self.limits is not None and self._peer is not None:
            self._counted = False
            self.limits.leave(self._peer)
            if self.room is not None:
                self.room.wake(self._peer)

    def _busy(self) -> None:
        """Answer Server.Busy without reading the request's body, and close."""
        from gateway.entrypoints.soap.faults import BUSY, envelope  # spyne's types: imported once SOAP serves
        from gateway.entrypoints.soap.types import TNS
        from gateway.entrypoints.soap.v2 import PATH_V2, TNS_V2

        target = bytes(self.rfile.buf[self.rfile.pos:self.rfile.pos + 200]).split(b" ", 2)[1:2]
        namespace = TNS_V2 if target == [PATH_V2.encode()] else TNS
        body = envelope(BUSY, "too many requests from this address at once: retry later", namespace)
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/xml; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n").encode()
        try:
            self.socket.settimeout(self.read_timeout)
            self.socket.sendall(head + body)
        except OSError:
            pass

    def _handshake(self) -> bool:
        sock: ssl.SSLSocket = self.socket
        sock.setblocking(False)
        try:
            sock.do_handshake()
        except _WAIT:
            return False
        except (ssl.SSLError, OSError):
            self._closed_in_handshake = True
            return False
        finally:
            sock.settimeout(self.read_timeout)
        self._handshaken = True
        self.ssl_env = self.server.ssl_adapter.get_environ(sock)
        return True


def connection_class(header: float, read: float, request: float, limits: ConnectionLimits | None = None,
                     max_body: float = math.inf, room: WaitingRoom | None = None) -> type[GuardedConnection]:
    """A GuardedConnection class with these timeouts and bounds (cheroot makes connections from a class)."""
    return type("SoapConnection", (GuardedConnection,),
                {"header_timeout": header, "read_timeout": read, "request_timeout": request, "limits": limits,
                 "max_body": max_body, "room": room})
