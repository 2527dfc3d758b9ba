"""Watch ``mappings/`` (watchdog) and reload a mapping as soon as its file changes.

Editors save in many ways (write in place, write a temp file and rename over, delete and create),
so every event naming a ``*.yaml`` or ``*.yml`` file, as source or destination, triggers a refresh.
The registry itself decides whether the file changed and keeps the last good version on error.

The folder itself removed and made again, or renamed away with another put in its place, leaves the
watch on the old one: ``serve`` asks ``folder_replaced`` now and then and restarts the watcher, which
reads every mapping again. A folder that is missing is waited for, never made again here (the
operator's ``mv`` of the real folder into place would land inside an empty one).
"""

from __future__ import annotations

import os
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from gateway.entrypoints.observed import ObservedFolder
from gateway.services.mappings import MappingRegistry

_SUFFIXES = (".yaml", ".yml")


class _Handler(FileSystemEventHandler):
    def __init__(self, registry: MappingRegistry) -> None:
        self.registry = registry

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = Path(str(raw)) if raw else None
            if path is not None and path.suffix in _SUFFIXES and not path.name.startswith(".") and path.exists():
                self.registry.refresh(path)


class MappingWatcher(ObservedFolder):
    """Refreshes the registry's entry for every mapping file changed under ``folder``."""

    def __init__(self, registry: MappingRegistry, folder: Path) -> None:
        super().__init__()
        self.registry, self.folder = registry, folder
        self._inode: tuple[int, int] | None = None  # the folder being watched

    def folder_replaced(self) -> bool:
        """True when ``folder`` is now another folder than the one watched (made again, or another moved in)."""
        try:
            st = os.stat(self.folder)
        except OSError:
            return False  # missing: nothing to watch until it is back
        return self._inode is not None and (st.st_dev, st.st_ino) != self._inode

    def restart(self) -> None:
        """Watch the folder anew (the old observer, if still running, is stopped first)."""
        if self._observer.is_alive():
            self.stop()
        super().restart()

    def start(self) -> None:
        """Watch, then load every mapping once (so later breakage has a last good version). In this order an edit
        that comes meanwhile is seen by the watch or by the load (both: read twice, which the registry's stamp makes
        cheap); loaded first, an edit between the load and the watch's start was missed until a file asked for it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        st = os.stat(self.folder)
        self._inode = (st.st_dev, st.st_ino)
        self._observer.schedule(_Handler(self.registry), str(self.folder), recursive=False)
        self._observer.start()
        for path in sorted(self.folder.iterdir()):
            if path.suffix in _SUFFIXES and path.is_file():
                self.registry.refresh(path)
