"""Installed client mappings with hot reload: the last good version keeps running when an edit breaks.

``MappingRegistry.get`` checks the file's stamp (mtime, size, inode) on each call, so an edit takes
effect on the next file without a restart; the mapping watcher (``serve``) calls ``refresh`` on
each change so a broken edit is logged at once, not only when the next file arrives. A mapping that
never loaded raises ConfigError; one that loaded before and is now broken keeps its last good
version and logs why (once per edit).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.mapping.spec import MappingSpec, load_mapping

log = logging.getLogger(__name__)
Stamp = tuple[int, int, int, int] | None


@dataclass(frozen=True)
class MappingState:
    """What the registry holds for one file: the running spec and the last error, if any."""

    path: Path
    spec: MappingSpec | None
    loaded_at: datetime | None
    error: str | None = None
    generation: int = 0  # counts successful (re)loads


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


class MappingRegistry:
    """Thread-safe cache of loaded mappings keyed by file."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._good: dict[Path, tuple[MappingSpec, Stamp, datetime, int]] = {}
        self._failed: dict[Path, tuple[Stamp, str]] = {}

    def get(self, client_id: str) -> MappingSpec:
        """The client's installed mapping (reloaded if the file changed); ConfigError if none ever loaded."""
        return self.load(self.config.mapping_file(client_id))

    def load(self, path: Path) -> MappingSpec:
        """The mapping in ``path``, from the cache while the file is unchanged."""
        path = Path(path).resolve()
        stamp = _stamp(path)
        with self._lock:
            good = self._good.get(path)
            if good is not None and good[1] == stamp:
                return good[0]
            failed = self._failed.get(path)
            if good is not None and failed is not None and failed[0] == stamp:
                return good[0]
            try:
                spec = load_mapping(path)
            except ConfigError as exc:
                self._failed[path] = (stamp, str(exc))
                if good is None:
                    raise
                log.error("mapping.reload_failed file=%s keeping=last_good loaded_at=%s error=%s", path,
                          good[2].isoformat(timespec="seconds"), exc)
                return good[0]
            generation = good[3] + 1 if good else 1
            self._good[path] = (spec, stamp, datetime.now(timezone.utc), generation)
            self._failed.pop(path, None)
            log.info("mapping.%s file=%s client=%s generation=%d", "reloaded" if good else "loaded", path,
                     spec.client, generation)
            return spec

    def refresh(self, path: Path) -> None:
        """Reload ``path`` if it changed; errors are logged and kept in ``state``, never raised."""
        try:
            self.load(path)
        except ConfigError as exc:
            log.error("mapping.load_failed file=%s error=%s", path, exc)

    def state(self, path: Path) -> MappingState:
        """The running spec of ``path`` and the error of its latest edit, if that edit is broken."""
        path = Path(path).resolve()
        with self._lock:
            good = self._good.get(path)
            failed = self._failed.get(path)
        error = failed[1] if failed else None
        if good is None:
            return MappingState(path, None, None, error)
        return MappingState(path, good[0], good[2], error, good[3])
