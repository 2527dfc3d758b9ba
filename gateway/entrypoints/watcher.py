"""Inbox watcher: watchdog events plus a periodic sweep decide when a dropped file is complete.

A file is complete when its writer is done with it, not after a quiet second:

- it was closed after writing (inotify's close-write), renamed into ``upload/`` from a temp name or
  another folder, or found by the sweep; and
- no process has it open for writing (``services.file_writers``; where that cannot be told, the quiet
  window alone decides); and
- it has been quiet (no write, close or rename) for ``stable_seconds``; a writer that opens, appends
  and closes per chunk must pause less than that, or use a temp name or a marker.

A ``<name>.done`` marker makes it complete at once (once no process has it open for writing). For a
client with ``marker_only`` nothing but the marker counts, so a writer may close between chunks.
Temp names (``*.part``, ``*.filepart``, ``*.tmp``, dot files) are ignored until renamed. The sweep (at
start-up and every ``sweep_seconds``) catches what arrived while the gateway was down or what an event
missed. Files the gateway's own SFTP server is tracking (``ignore``) are left alone: that server hands
them to ingest itself when they are whole. Complete files are offered oldest first by modification time
(a backlog found at start-up is taken in the order it arrived, not in the folder's listing order).

Links are never followed: files are looked at with ``lstat``, and a symbolic link is handed on as it
is (no writer check through it), so the ingest refuses it with a failed ack instead of reading the
file it points to.

An upload folder that goes away while ``serve`` runs (removed, renamed, replaced by a file, unreadable,
a share unmounted) is that client's trouble alone: the sweep logs ``watcher.folder_unusable`` once per
problem, goes on with the other clients, and looks again every second (``folders_changed``, also for a
folder renamed away with another put in its place); once the folder is back it is watched anew (the old watch died with the folder, or follows it under its new name) and logged as
``watcher.folder_back``. The watcher never creates it again itself: under an unmounted share that would
put uploads on the wrong disk.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (DirDeletedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent, FileSystemEvent, FileSystemEventHandler)
from watchdog.observers.api import ObservedWatch

from gateway.entrypoints.observed import ObservedFolder
from gateway.episodes import Episodes
from gateway.services.ack import sibling
from gateway.services.file_writers import has_writer
from gateway.services.inbox import is_candidate, name_problem, shown

log = logging.getLogger(__name__)
MARKER = ".done"
_EVENTS: list[type[FileSystemEvent]] = [DirDeletedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                                         FileModifiedEvent, FileMovedEvent]


@dataclass
class _Entry:
    client_id: str
    since: float  # monotonic time of the last write, close or rename seen
    how: str  # what told us the writer may be done: closed, renamed, created, found, marker
    size: int = -1
    mtime_ns: int = -1
    handed: bool = False  # offered by ready(); again only after a change, a close or release()
    not_before: float = 0.0
    told_writing: bool = False  # "open for writing" logged once per entry
    told_complete: bool = False  # "complete" logged once per entry (offers again after release() are quiet)
    told_special: bool = False  # "not a file" logged once per entry


class _Handler(FileSystemEventHandler):
    """Translates watchdog events into the watcher's terms; opens and reads are ignored (ours among them)."""

    def __init__(self, watcher: "InboxWatcher", client_id: str) -> None:
        self.watcher, self.client_id = watcher, client_id

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if isinstance(event, DirDeletedEvent) and event.src_path and \
                    Path(str(event.src_path)) == self.watcher.upload_dirs.get(self.client_id):
                self.watcher.watch_lost(self.client_id)  # the watch ended with the folder: look again soon
            return
        src = Path(str(event.src_path)) if event.src_path else None
        if isinstance(event, FileMovedEvent):
            if src is not None:
                self.watcher.forget(src)
            if event.dest_path:
                self.watcher.touch(self.client_id, Path(str(event.dest_path)), "renamed")
        elif src is None:
            return
        elif isinstance(event, FileDeletedEvent):
            self.watcher.forget(src)
        elif isinstance(event, FileClosedEvent):
            self.watcher.touch(self.client_id, src, "closed")
        elif isinstance(event, FileCreatedEvent):  # a new file, or one moved in from an unwatched folder
            self.watcher.touch(self.client_id, src, "created")
        elif isinstance(event, FileModifiedEvent):
            self.watcher.touch(self.client_id, src, "written")


class InboxWatcher(ObservedFolder):
    """Tracks candidate files per client; ``ready()`` returns those that are complete."""

    def __init__(self, upload_dirs: dict[str, Path], stable_seconds: float,
                 ignore: Callable[[str, Path], bool] | None = None, *,
                 marker_only: Collection[str] = ()) -> None:
        self.upload_dirs, self.stable_seconds = upload_dirs, stable_seconds
        self.ignore = ignore
        self.marker_only = frozenset(marker_only)  # client ids whose files count only at their marker
        self._lock = threading.Lock()
        self._seen: dict[Path, _Entry] = {}
        self._watches: dict[str, tuple[ObservedWatch, tuple[int, int]]] = {}  # client id -> watch, folder's inode
        self._lost: set[str] = set()  # clients whose folder was deleted under its watch
        self._trouble = Episodes()  # client id -> the problems with its upload folder logged, since when
        super().__init__()

    def start(self) -> None:
        self._watches.clear()  # a new observer (also after a restart) has none
        for folder in self.upload_dirs.values():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # reported by the sweep, which watches the folder once it is usable
        self._observer.start()
        self.sweep()

    def folders_changed(self) -> bool:
        """True when an upload folder is unusable, lost its watch or is not the folder watched (renamed away and
        another put in its place): then a sweep should look now. One ``stat`` per client."""
        if self._trouble.troubled() or self._lost:
            return True
        for client_id, folder in self.upload_dirs.items():
            current = self._watches.get(client_id)
            try:
                st = os.stat(folder)
            except OSError:
                return True
            if current is None or current[1] != (st.st_dev, st.st_ino):
                return True
        return False

    def watch_lost(self, client_id: str) -> None:
        with self._lock:
            self._lost.add(client_id)

    def sweep(self) -> None:
        """Notice every file in the upload folders (the same rule then decides when it is complete)."""
        for client_id, folder in self.upload_dirs.items():
            try:
                entries = self._look(client_id, folder)
            except OSError as exc:
                self._unusable(client_id, folder, exc)
                continue
            for p in entries:
                if p.is_symlink() or p.is_file():  # a link, even to a file, is found as a link
                    self.touch(client_id, p, "found", activity=False)

    def _look(self, client_id: str, folder: Path) -> list[Path]:
        """The folder's entries, after making sure the folder itself is watched (raises OSError when unusable)."""
        st = os.stat(folder)  # the configured folder may itself be a link to the real one
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
        inode = (st.st_dev, st.st_ino)
        with self._lock:
            lost = client_id in self._lost
            self._lost.discard(client_id)
        current = self._watches.get(client_id)
        if current is None or lost or current[1] != inode:  # new, deleted under its watch, or renamed away
            if current is not None:
                try:
                    self._observer.unschedule(current[0])
                except (KeyError, OSError):
                    pass  # its emitter ended with the folder
            # Opens and read-only closes are left out: the writer check itself opens the file.
            watch = self._observer.schedule(_Handler(self, client_id), str(folder), recursive=False,
                                            event_filter=_EVENTS)
            self._watches[client_id] = (watch, inode)
        entries = list(folder.iterdir())  # after the watch: what arrives meanwhile is seen either way
        lasted = self._trouble.ok(client_id)
        if lasted is not None:
            log.info("watcher.folder_back client=%s folder=%s seconds=%.1f: watching it again", client_id, folder,
                     lasted)
        return entries

    def _unusable(self, client_id: str, folder: Path, exc: OSError) -> None:
        """Log an unusable upload folder once per problem (not at every look)."""
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
        if not self._trouble.failed(client_id, problem):
            return
        log.warning("watcher.folder_unusable client=%s folder=%s error=%s: no files of this client are taken from "
                    "it until it is back; the other clients go on", client_id, folder, problem)

    def touch(self, client_id: str, path: Path, how: str = "found", *, activity: bool = True) -> None:
        """Record an event on ``path`` (or on its marker); ``activity`` restarts the quiet window."""
        if path.name.endswith(MARKER):
            path, how = path.with_name(path.name[:-len(MARKER)]), "marker"
        if not is_candidate(path):
            return
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(path)
            if entry is None:
                self._seen[path] = _Entry(client_id, now, how)
                return
            if activity:
                entry.since, entry.how = now, how
            if how in ("closed", "renamed", "marker"):
                entry.handed = False  # closed or renamed again after it was offered: look at it again

    def forget(self, path: Path) -> None:
        with self._lock:
            self._seen.pop(path, None)

    def release(self, client_id: str, path: Path, delay: float = 0.0) -> None:
        """Offer ``path`` again (an ingest failed and left it), no sooner than ``delay`` seconds from now."""
        with self._lock:
            entry = self._seen.setdefault(path, _Entry(client_id, time.monotonic(), "found"))
            entry.handed, entry.not_before = False, time.monotonic() + delay

    def ready(self) -> Iterable[tuple[str, Path]]:
        """Complete files not handed out before, oldest (by modification time) first (does file I/O: call it off the
        event loop)."""
        now, out = time.monotonic(), list[tuple[int, float, str, Path]]()
        with self._lock:
            entries = list(self._seen.items())
        try:
            self._ready(now, entries, out)
        except BaseException:
            # The ignore check asks the database, which may fail midway (a connection cut): the files handed out
            # earlier in this pass reach nobody, and marked as handed they were never offered again until a
            # restart, left in the inbox without a submission or an ack. They are offered at the next look.
            with self._lock:
                for *_, path in out:
                    entry = self._seen.get(path)
                    if entry is not None:
                        entry.handed = False
            raise
        return [(c, p) for *_, c, p in sorted(out)]

    def _ready(self, now: float, entries: list[tuple[Path, _Entry]], out: list[tuple[int, float, str, Path]]) -> None:
        for path, entry in entries:
            # a name the database (and a marker's name) cannot hold is no SFTP upload: the ingest refuses it
            odd = name_problem(path.name) is not None
            if self.ignore is not None and not odd and self.ignore(entry.client_id, path):
                self.forget(path)  # the SFTP server owns it; a later sweep sees it again if not
                continue
            try:
                st = path.lstat()  # never through a link
            except OSError:  # gone, or its folder is (a later sweep finds it again if it comes back)
                self.forget(path)
                continue
            link = stat.S_ISLNK(st.st_mode)
            if not link and not stat.S_ISREG(st.st_mode):  # a named pipe, socket or device: never read, never "complete"
                if not entry.told_special:
                    entry.told_special = True
                    log.warning("watcher.not_a_file client=%s file=%s: left alone", entry.client_id, shown(path.name))
                continue
            with self._lock:
                if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                    if entry.size >= 0:
                        entry.since = now  # it grew or was rewritten since we last looked
                    entry.size, entry.mtime_ns, entry.handed = st.st_size, st.st_mtime_ns, False
                if entry.handed or now < entry.not_before:
                    continue
                named = None if odd else sibling(path, MARKER)
                marker = named is not None and named.exists()
                if not marker and (entry.client_id in self.marker_only or now - entry.since < self.stable_seconds):
                    continue
            writing = False if link else has_writer(path)
            if writing:
                with self._lock:
                    entry.since = now  # still open for writing: not quiet, whatever the clock says
                    if not entry.told_writing:
                        entry.told_writing = True
                        log.debug("watcher.waiting client=%s file=%s reason=open_for_writing", entry.client_id,
                                  shown(path.name))
                continue
            with self._lock:
                entry.handed = True
                first, entry.told_complete = not entry.told_complete, True
            how = "marker" if marker else entry.how
            log.log(logging.INFO if first else logging.DEBUG, "watcher.complete client=%s file=%s by=%s writer_check=%s",
                    entry.client_id, shown(path.name), how, "none" if writing is False else "unavailable")
            # Oldest file first by its modification time: files found by a sweep (a restart with a backlog) all
            # have the moment they were found, in the folder's listing order, and a file that had waited longest
            # could wait behind dozens that came after it (a soak's restarts: minutes, ack after later acks).
            out.append((entry.mtime_ns, entry.since, entry.client_id, path))
