"""Helpers for the SFTP tests: client keys, client files, the OpenSSH client, an in-process server."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from bench.gen import HEADER, rows
from gateway.bootstrap import App
from gateway.entrypoints.sftp import SftpInbox, host_key_path
from gateway.services.inbox import UploadBook

from tests.support import wait_for  # noqa: F401  (re-exported for the SFTP tests)



@dataclass
class ClientKey:
    private: Path
    public_line: str


def make_key(folder: Path, name: str) -> ClientKey:
    """An ed25519 key pair in OpenSSH format, usable by ``sftp -i`` and asyncssh."""
    folder.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = folder / name
    key.write_private_key(str(path))
    path.chmod(0o600)
    return ClientKey(path, key.export_public_key().decode().strip())


def client_csv(path: Path, n: int, prefix: str, seed: int = 7) -> Path:
    """A demo-layout CSV with ``n`` valid rows whose references start with ``prefix``."""
    with open(path, "w", encoding="cp1252", newline="") as fh:
        fh.write(";".join(HEADER) + "\r\n")
        for i, r in enumerate(rows(n, seed=seed)):
            r[0] = f"{prefix}-{i:06d}"
            fh.write(";".join(f'"{v}"' if ";" in v else v for v in r) + "\r\n")
    return path


def sftp_clients_config(keys: dict[str, ClientKey], **extra: dict[str, Any]) -> dict[str, Any]:
    """``clients`` config: each named client on the demo mapping with its key."""
    return {cid: {"name": cid, "mapping": "demo", "default_partner": "demo-agency",
                  "sftp": {"authorized_keys": [k.public_line], **extra.get(cid, {})}}
            for cid, k in keys.items()}


def openssh_batch(port: int, key: Path, user: str, commands: Iterable[str], known_hosts: Path,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run OpenSSH ``sftp -b -`` against the server; the host key is trusted on first use."""
    return subprocess.run(
        ["sftp", "-b", "-", "-i", str(key), "-P", str(port), "-o", "StrictHostKeyChecking=accept-new",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "PasswordAuthentication=no", "-o", "LogLevel=ERROR", f"{user}@127.0.0.1"],
        input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=timeout)


class ServerThread:
    """``SftpInbox`` running on its own event loop in a thread, as ``gateway serve`` runs it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.book = UploadBook(app)
        self.loop = asyncio.new_event_loop()
        self.inbox = SftpInbox(app, self.book)
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                pending = await asyncio.to_thread(self.book.recover)
                await self.inbox.start()
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                self._ready.set()
            await self.inbox.run(self._stop, pending)

        try:
            self.loop.run_until_complete(main())
        except BaseException:
            pass
        finally:
            # an ingest still running in a worker thread finishes before the app is closed
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def port(self) -> int:
        return self.inbox.port

    @property
    def host_key(self) -> Path:
        return host_key_path(self.app)

    def connect(self, key: Path | None, user: str, **kw: Any) -> Any:
        """Coroutine: an asyncssh client connection trusting this server's host key."""
        known = asyncssh.import_known_hosts(
            f"[127.0.0.1]:{self.port} {asyncssh.read_private_key(str(self.host_key)).export_public_key().decode()}")
        return asyncssh.connect("127.0.0.1", self.port, username=user, known_hosts=known,
                                client_keys=[str(key)] if key else [], agent_path=None, **kw)


@contextmanager
def sftp_server(base: Path, db_url: str, clients: dict[str, Any], **sftp: Any) -> Iterator[ServerThread]:
    """A gateway rooted at ``base`` with these SFTP ``clients`` (``sftp_clients_config``) and extra ``sftp``
    settings, its SFTP server running on an ephemeral port until the block ends."""
    from gateway.bootstrap import build_app
    from gateway.config import load_config
    from gateway.services.keys import init_keys
    from tests.conftest import write_config

    cfg = write_config(base, db_url, sftp={"enabled": True, "port": 0, **sftp}, clients=clients,
                       routing=[{"partner": "demo-agency"}])
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    try:
        with ServerThread(app) as srv:
            yield srv
    finally:
        app.close()
