"""Inbox watcher: watchdog events plus a periodic sweep decide when a dropped file is complete.

A file is complete when its size and mtime have not changed for ``stable_seconds``, or at once
when a ``<name>.done`` marker appears. Temp names (``*.part``, ``*.filepart``, ``*.tmp``, dot
files) are ignored until renamed. The sweep (at start-up and every ``sweep_seconds``) catches what
arrived while the gateway was down or what an event missed. Files the gateway's own SFTP server
is tracking (``ignore``) are left alone: that server hands them to ingest itself when they are whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gateway.services.inbox import is_candidate


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "InboxWatcher", client_id: str) -> None:
        self.watcher, self.client_id = watcher, client_id

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for p in (event.src_path, getattr(event, "dest_path", "")):
            if p:
                self.watcher.touch(self.client_id, Path(str(p)))


class InboxWatcher:
    """Tracks candidate files per client; ``ready()`` returns those that are complete."""

    def __init__(self, upload_dirs: dict[str, Path], stable_seconds: float,
                 ignore: Callable[[str, Path], bool] | None = None) -> None:
        self.upload_dirs, self.stable_seconds = upload_dirs, stable_seconds
        self.ignore = ignore
        self._lock = threading.Lock()
        self._seen: dict[Path, tuple[str, int, int, float]] = {}  # path -> client, size, mtime_ns, since
        self._done: set[Path] = set()  # handed out; forgotten when the file disappears or changes
        self._observer = Observer()

    def start(self) -> None:
        for client_id, folder in self.upload_dirs.items():
            folder.mkdir(parents=True, exist_ok=True)
            self._observer.schedule(_Handler(self, client_id), str(folder), recursive=False)
        self._observer.start()
        self.sweep()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def sweep(self) -> None:
        for client_id, folder in self.upload_dirs.items():
            for p in folder.iterdir():
                if p.is_file():
                    self.touch(client_id, p)

    def touch(self, client_id: str, path: Path) -> None:
        if path.name.endswith(".done"):
            path = path.with_name(path.name[:-5])
        if not is_candidate(path):
            return
        with self._lock:
            if path not in self._seen:
                self._seen[path] = (client_id, -1, -1, time.monotonic())

    def ready(self) -> Iterable[tuple[str, Path]]:
        """Complete files not handed out before, oldest first."""
        now, out = time.monotonic(), []
        with self._lock:
            for path, (client_id, size, mtime, since) in list(self._seen.items()):
                if self.ignore is not None and self.ignore(client_id, path):
                    del self._seen[path]  # the SFTP server owns it; a later sweep sees it again if not
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    del self._seen[path]
                    self._done.discard(path)
                    continue
                if (st.st_size, st.st_mtime_ns) != (size, mtime):
                    self._seen[path] = (client_id, st.st_size, st.st_mtime_ns, now)
                    self._done.discard(path)
                    if not path.with_name(path.name + ".done").exists():
                        continue
                elif now - since < self.stable_seconds and not path.with_name(path.name + ".done").exists():
                    continue
                if path not in self._done:
                    self._done.add(path)
                    out.append((since, client_id, path))
        return [(c, p) for _, c, p in sorted(out)]
