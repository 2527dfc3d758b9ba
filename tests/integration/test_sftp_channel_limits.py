"""Channels are bounded per SSH connection: a logged-in client opening channel after channel on one connection
(each an SFTP session with its objects, ~10 KB: 3,000 took ~30 MB) gets a clean refusal past
``sftp.max_channels_per_connection``, and its connection and open sessions keep working. asyncssh clients on
loopback against the real server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from gateway.config import SftpServerConfig
from tests.sftp_support import ClientKey, ServerThread, make_key, sftp_clients_config, sftp_server

BOUND = SftpServerConfig().max_channels_per_connection


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ClientKey]:
    return {"demo": make_key(tmp_path / "client-keys", "demo")}


@pytest.fixture
def server(tmp_path: Path, keys: dict[str, ClientKey]) -> Iterator[ServerThread]:
    with sftp_server(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", sftp_clients_config(keys)) as srv:
        yield srv


def test_channels_of_one_connection_are_bounded_and_refused_cleanly(
        server: ServerThread, keys: dict[str, ClientKey], caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[list[str], list[str]]:
        async with await server.connect(keys["demo"].private, "demo") as conn:
            sessions: list[asyncssh.SFTPClient] = []
            outcome: list[str] = []
            for _ in range(BOUND + 5):  # the default bound, and five more
                try:
                    sessions.append(await conn.start_sftp_client())
                    outcome.append("open")
                except asyncssh.ChannelOpenError as exc:
                    outcome.append(f"refused:{exc.code}")
            # the connection and its sessions still work; a session closed makes room for a new one
            listed = await sessions[0].listdir("/")
            sessions.pop().exit()
            await asyncio.sleep(0)
            for _ in range(50):  # the channel's close travels to the server and back (bounded)
                try:
                    sessions.append(await conn.start_sftp_client())
                    outcome.append("reopened")
                    break
                except asyncssh.ChannelOpenError:
                    await asyncio.sleep(0.1)
            await sessions[-1].listdir("/upload")
            for s in sessions:
                s.exit()
            return outcome, sorted(listed)

    with caplog.at_level(logging.INFO, logger="gateway.sftp"):
        outcome, listed = asyncio.run(run())
    assert outcome == ["open"] * BOUND + [f"refused:{asyncssh.OPEN_RESOURCE_SHORTAGE}"] * 5 + ["reopened"], outcome
    assert "upload" in listed
    refused = [r.getMessage() for r in caplog.records if "channel_refused" in r.getMessage()]
    assert refused == [f"sftp.channel_refused client=demo peer=127.0.0.1 reason=too_many_channels open={BOUND}"]


def test_a_second_connection_of_the_client_has_its_own_channels(
        server: ServerThread, keys: dict[str, ClientKey]) -> None:
    async def run() -> int:
        async with await server.connect(keys["demo"].private, "demo") as first, \
                await server.connect(keys["demo"].private, "demo") as second:
            held = [await first.start_sftp_client() for _ in range(BOUND)]
            other = await second.start_sftp_client()  # the bound is per connection, not per client
            n = len(await other.listdir("/"))
            for s in [*held, other]:
                s.exit()
            return n
    assert asyncio.run(run()) > 0


def test_an_asyncssh_whose_sessions_are_made_otherwise_keeps_sftp_working(
        tmp_path: Path, keys: dict[str, ClientKey], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The bound builds on asyncssh's SSHServerStreamSession, which is not in its documented API: with a release
    that makes its sessions otherwise (``channels.supported`` false, as for such a release), SFTP still serves,
    through asyncssh's own sftp_factory, and the start says the bound is off. Before, an incompatible release
    would have taken the whole SFTP front down."""
    import gateway.entrypoints.sftp as sftp_front

    monkeypatch.setattr(sftp_front, "channels_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="gateway.sftp"):
        with sftp_server(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", sftp_clients_config(keys)) as srv:
            async def run() -> list[str]:
                async with await srv.connect(keys["demo"].private, "demo") as conn:
                    async with conn.start_sftp_client() as sftp:
                        return sorted(await sftp.listdir("/"))
            assert "upload" in asyncio.run(run())
    assert [r.getMessage().split()[0] for r in caplog.records if "channel_bound_off" in r.getMessage()] == \
        ["sftp.channel_bound_off"]


def test_this_asyncssh_makes_its_sessions_as_the_bound_expects() -> None:
    """When asyncssh changes the class the bound builds on, this says so (and the front falls back, above)."""
    from gateway.entrypoints.sftp.channels import supported
    assert supported(), f"asyncssh {asyncssh.__version__}: SSHServerStreamSession changed; see sftp/channels.py"
