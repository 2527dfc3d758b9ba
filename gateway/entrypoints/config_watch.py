"""Watch the config file (watchdog) and take changed clients into a running ``serve`` without restart.

What reloads: the ``clients`` section: SFTP keys and password hashes, SOAP users, ``enabled``, names,
mappings, default partners, ack and SFTP limits (everything read per file or per login), and the web
console's logins (``web.users``) when the console runs. What needs a
restart: partners, routing rules, listeners (sftp, soap), database, paths, dispatcher, the folders the
inbox watcher watches (a new client's files dropped by other means than SFTP), credit bureaus and the
``credit`` defaults. A change there is logged once as ``config.restart_needed``; a file whose clients name a
bureau the running config lacks is not taken at all (``config.restart_needed bureaus=...``).

The admin CLI replaces the file by rename; editors write in place or rename: every event naming the
file, as source or destination, triggers a reload. A file that does not load (half-written, invalid) is
logged and the running config stays; the next good write is taken. A file some process still has open for
writing is not read until it is closed (its close is an event too): halfway it may load, without its last
clients.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from gateway.entrypoints.observed import ObservedFolder
from gateway.bootstrap import App
from gateway.config import GatewayConfig, load_config
from gateway.entrypoints.sftp.auth import CredentialTable, load_credentials
from gateway.errors import ConfigError
from gateway.services.file_writers import has_writer
from gateway.services.routing import Router

log = logging.getLogger("gateway.config")
_RESTART = ("partners", "routing", "sftp", "soap", "database", "paths", "keys", "dispatcher", "watcher", "node",
            "bureaus", "credit")


class ClientReloader:
    """Applies a newly loaded config's clients to the running parts, all or nothing."""

    def __init__(self, app: App, sftp: CredentialTable | None, soap_reload: Callable[[GatewayConfig], None] | None,
                 web_reload: Callable[[GatewayConfig], Callable[[], None]] | None = None):
        """``web_reload`` checks the console's logins (``web.users``) and returns the swap that takes them."""
        self.app, self.sftp, self.soap_reload, self.web_reload = app, sftp, soap_reload, web_reload
        self._lock = threading.Lock()

    def apply(self, new: GatewayConfig) -> bool:
        """Take ``new``'s clients and console logins; False when neither changed. ConfigError changes nothing."""
        with self._lock:
            cur = self.app.config
            clients = msgspec.json.encode(new.clients) != msgspec.json.encode(cur.clients)
            # the console's logins follow their clients too (a disabled client's logins end)
            logins = self.web_reload is not None and (
                clients or msgspec.json.encode(new.web.users) != msgspec.json.encode(cur.web.users))
            if not clients and not logins:
                self._restart_note(cur, new)
                return False
            unknown = sorted({b for c in new.clients.values() if c.credit is not None for b in c.credit.bureaus
                              if b not in cur.bureaus})
            if clients and unknown:
                # bureaus are read at start only: a client naming one the running gateway lacks would fail
                # every check, so nothing of this file is taken until the restart
                log.warning("config.restart_needed bureaus=%s: clients name bureaus the running config lacks; "
                            "nothing reloaded until the next start", ",".join(unknown))
                return False
            swap_logins = self.web_reload(new) if logins and self.web_reload is not None else None
            if clients:
                if self.sftp is not None:
                    load_credentials(new)  # every key parses before anything is swapped
                if self.soap_reload is not None:
                    self.soap_reload(new)  # checks, then swaps
                if self.sftp is not None:
                    self.sftp.reload(new)
                cur.clients = new.clients  # every part holds this same config object
                self.app.router = Router(cur)
            if swap_logins is not None:
                swap_logins()
                cur.web.users = new.web.users
            log.info("config.reloaded clients=%d enabled=%d web_logins=%d", len(new.clients),
                     sum(c.enabled for c in new.clients.values()), len(cur.web.users))
            self._restart_note(cur, new)
            return True

    @staticmethod
    def _restart_note(cur: GatewayConfig, new: GatewayConfig) -> None:
        changed = [name for name in _RESTART
                   if msgspec.json.encode(getattr(cur, name)) != msgspec.json.encode(getattr(new, name))]
        if changed:
            log.warning("config.restart_needed sections=%s: these take effect at the next start", ",".join(changed))


class _Handler(FileSystemEventHandler):
    def __init__(self, path: Path, changed: Callable[[], None]) -> None:
        self.path, self.changed = path, changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and Path(str(raw)).resolve() == self.path and self.path.exists():
                self.changed()
                return


class ConfigWatcher(ObservedFolder):
    """Reloads clients from ``path`` whenever the file changes."""

    def __init__(self, path: Path, reloader: ClientReloader) -> None:
        super().__init__()
        self.path, self.reloader = path.resolve(), reloader

    def reload(self) -> None:
        if has_writer(self.path):
            # Written in place (an editor saving in pieces, a copy): halfway it can be a valid config without its
            # last clients, which would lose their logins until the rest arrives. Read when the writer closes it.
            log.info("config.being_written: read once it is closed")
            return
        try:
            new = load_config(self.path)
            self.reloader.apply(new)
        except ConfigError as exc:
            log.warning("config.reload_failed error=%s: the running config stays", exc)

    def start(self) -> None:
        self._observer.schedule(_Handler(self.path, self.reload), str(self.path.parent), recursive=False)
        self._observer.start()

    def restart(self) -> None:
        """A new observer after the old one died; the file is read again so no change is missed."""
        super().restart()
        self.reload()
