"""The channels of one SSH connection: each an SFTP (or SCP) session the client opened on it.

Every channel costs objects of its own (~10 KB: a logged-in client opening 3,000 on one connection grew the
process by ~30 MB, with no end). asyncssh has no bound of its own for them, and with an ``sftp_factory`` given
to ``listen`` it opens every session without asking the server object; so the gateway makes the sessions
itself, in ``SSHServer.session_requested``, and a connection has at most ``sftp.max_channels_per_connection``
open at once (OpenSSH's MaxSessions is 10 too). One more is refused with SSH's resource-shortage open failure:
the connection and its open sessions go on, and a closed session makes room. The first refusal on a
connection is logged, not every one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession  # what asyncssh makes for an sftp_factory given to listen

log = logging.getLogger("gateway.sftp")


def supported() -> bool:
    """Whether this asyncssh makes its SFTP sessions as the bound expects (``SSHServerStreamSession`` is not part of
    asyncssh's documented API: a release that changes it must not take the SFTP front down with it; ``serve`` then
    listens with asyncssh's own ``sftp_factory`` and says the bound is off)."""
    try:
        params = list(inspect.signature(SSHServerStreamSession.__init__).parameters)
    except (TypeError, ValueError):
        return False
    return params[:5] == ["self", "session_factory", "sftp_factory", "sftp_version", "allow_scp"]

SftpFactory = Callable[..., asyncssh.SFTPServer]  # called with the session's channel


@dataclass
class ChannelCount:
    """One connection's open channels, and how many it was refused."""

    open: int = 0
    refused: int = 0


class _CountedSession(SSHServerStreamSession[bytes]):
    """asyncssh's own SFTP/SCP stream session, giving its place back when its channel closes."""

    def __init__(self, count: ChannelCount, sftp_factory: SftpFactory, allow_scp: bool) -> None:
        super().__init__(None, sftp_factory, MIN_SFTP_VERSION, allow_scp)
        self._count: ChannelCount | None = count

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self._count is not None:
                self._count.open -= 1
                self._count = None


class SessionFactory:
    """Makes the session of each channel a connection opens, at most ``limit`` open at once per connection."""

    def __init__(self, limit: int, sftp_factory: SftpFactory, allow_scp: bool) -> None:
        self.limit, self.sftp_factory, self.allow_scp = max(1, limit), sftp_factory, allow_scp

    def open(self, count: ChannelCount, client: str, peer: str) -> asyncssh.SSHServerSession[bytes]:
        """A session for a new channel; ChannelOpenError (the client is told why) when the connection has its share."""
        if count.open >= self.limit:
            count.refused += 1
            if count.refused == 1:
                log.warning("sftp.channel_refused client=%s peer=%s reason=too_many_channels open=%d",
                            client, peer, count.open)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE,
                                            f"at most {self.limit} channels per connection")
        count.open += 1
        return _CountedSession(count, self.sftp_factory, self.allow_scp)
