"""Installed client mappings with hot reload: the last good version keeps running when an edit breaks.

``MappingRegistry.get`` checks the file's stamp (mtime, size, inode) on each call, so an edit takes
effect on the next file without a restart; the mapping watcher (``serve``) calls ``refresh`` on
each change so a broken edit is logged at once, not only when the next file arrives. A mapping that
never loaded raises ConfigError; one that loaded before and is now broken keeps its last good
version and logs why (once per edit).

The file is opened without blocking and read only if it is a regular file of at most
``MAX_MAPPING_BYTES``: a named pipe, a device or a folder under a mapping's name (or a link to one) is
a broken edit like any other, never a read that waits for ever with the registry's lock held (every
ingest asks the registry).

A mapping file some process still has open for writing is not read: a copy written in place (scp, a
copy onto a share, an editor that saves in pieces) can be, halfway, a valid mapping without its last
fields or its ``policy``, and a file ingested then was mapped without them (a debtor's IBAN left out,
claims of a client that releases every run sent at once). The last good version runs until the writer
closes the file (the watcher's close event, or the next file's ``get``, reads it then); a mapping that
never loaded raises ConfigError meanwhile, which holds the client's files in the inbox.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.file_stamp import Stamp as FileStamp, file_stamp
from gateway.errors import ConfigError
from gateway.mapping.spec import MappingSpec, parse_mapping
from gateway.services.file_writers import has_writer

log = logging.getLogger(__name__)
Stamp = FileStamp | None
MAX_MAPPING_BYTES = 16 << 20


def _read_mapping(path: Path) -> MappingSpec:
    """``load_mapping`` for a file that may be anything: errors are ConfigError, nothing blocks."""
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ConfigError("mapping file not found", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot open the mapping file: {exc.strerror}", file=file) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("not a regular file (a folder, named pipe or device under a mapping's name)", file=file)
        if st.st_size > MAX_MAPPING_BYTES:
            raise ConfigError(f"the mapping file has {st.st_size} bytes; at most {MAX_MAPPING_BYTES} are read",
                              file=file)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_MAPPING_BYTES + 1)
        if len(data) > MAX_MAPPING_BYTES:  # it grew while being read
            raise ConfigError(f"the mapping file has more than {MAX_MAPPING_BYTES} bytes", file=file)
    except OSError as exc:
        raise ConfigError(f"cannot read the mapping file: {exc.strerror}", file=file) from None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"mapping files must be UTF-8 ({exc.reason} at byte {exc.start})", file=file) from None
    return parse_mapping(text, file=file)


@dataclass(frozen=True)
class MappingState:
    """What the registry holds for one file: the running spec and the last error, if any."""

    path: Path
    spec: MappingSpec | None
    loaded_at: datetime | None
    error: str | None = None
    generation: int = 0  # counts successful (re)loads


def _key(path: Path) -> Path:
    """The file's absolute name, its links not followed: a mapping installed as a link keeps its last good
    version when the link is pointed at a broken file (the target's name would be a new, never-loaded key)."""
    return Path(os.path.abspath(path))


class MappingRegistry:
    """Thread-safe cache of loaded mappings keyed by file."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._good: dict[Path, tuple[MappingSpec, Stamp, datetime, int]] = {}
        self._failed: dict[Path, tuple[Stamp, str]] = {}
        self._writing: set[Path] = set()  # files logged as being written, until they are read

    def get(self, client_id: str) -> MappingSpec:
        """The client's installed mapping (reloaded if the file changed); ConfigError if none ever loaded."""
        return self.load(self.config.mapping_file(client_id))

    def load(self, path: Path) -> MappingSpec:
        """The mapping in ``path``, from the cache while the file is unchanged."""
        path = _key(path)
        stamp = file_stamp(path)
        with self._lock:
            good = self._good.get(path)
            if good is not None and good[1] == stamp:
                return good[0]
            failed = self._failed.get(path)
            if good is not None and failed is not None and failed[0] == stamp:
                return good[0]
            if has_writer(Path(os.path.realpath(path))):
                if path not in self._writing:  # once per write, however many pieces it comes in
                    self._writing.add(path)
                    log.info("mapping.being_written file=%s keeping=%s", path, "last_good" if good else "none")
                if good is not None:
                    return good[0]
                raise ConfigError("the mapping file is being written (a process has it open for writing); it is "
                                  "read once it is closed", file=str(path))
            self._writing.discard(path)
            try:
                spec = _read_mapping(path)
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
        path = _key(path)
        with self._lock:
            good = self._good.get(path)
            failed = self._failed.get(path)
        error = failed[1] if failed else None
        if good is None:
            return MappingState(path, None, None, error)
        return MappingState(path, good[0], good[2], error, good[3])
