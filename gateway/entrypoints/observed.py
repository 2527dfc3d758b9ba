"""What every folder watcher of ``serve`` shares: a watchdog observer that can be checked and replaced.

An exception in a watchdog handler ends the observer thread without a word; ``serve`` asks each
watcher whether its observer is ``alive`` and ``restart``s it when not (``start`` catches up on what
the dead observer missed: the inbox sweeps, mappings and config are read again).
"""

from __future__ import annotations

from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver


class ObservedFolder:
    """Base of the inbox, mapping and config watchers."""

    def __init__(self) -> None:
        self._observer: BaseObserver = Observer()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def alive(self) -> bool:
        """False when the observer thread died (a watchdog error ends it silently)."""
        return self._observer.is_alive()

    def restart(self) -> None:
        """A new observer after the old one died; ``start`` catches up on what it missed."""
        self._observer = Observer()
        self.start()
