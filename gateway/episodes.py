"""Problems that last: said once when they start and once when they are over, not at every look.

A client's archive, status or upload folder that cannot be used, a listener out of descriptors: the loop that
meets such a problem meets it again at every look, many times a minute. ``Episodes`` tells its caller when a
problem is news (the first of its kind since the key last worked: log it) and when the trouble is over (log
that, with how long it lasted), and stays quiet in between. The log lines themselves stay with the callers, each
in its own words. Like the supervisor's memory of a task's errors, a key remembers the last few distinct problems
of its episode, so two problems taking turns (a folder gone, then a file in its place) are two lines, not one
per look. Thread-safe: status files and archive indexes are written from worker threads.
"""

from __future__ import annotations

import threading
import time

RECENT_PROBLEMS = 8  # distinct problems a key's episode remembers; a ninth pushes out the oldest


class Episodes:
    """Per key (a client id, a listener), whether it is in trouble, since when, and which problems were said."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float, dict[str, None]]] = {}  # key -> since (monotonic), problems said

    def failed(self, key: str, problem: str) -> bool:
        """Record ``problem`` for ``key``; True when it is news and the caller should log it."""
        with self._lock:
            since, said = self._open.setdefault(key, (time.monotonic(), {}))
            if problem in said:
                del said[problem]
                said[problem] = None  # to the end: the latest
                return False
            said[problem] = None
            while len(said) > RECENT_PROBLEMS:
                del said[next(iter(said))]
            return True

    def ok(self, key: str) -> float | None:
        """``key`` works again: how many seconds its trouble lasted (the caller logs that it is back), or None when
        it had none."""
        with self._lock:
            episode = self._open.pop(key, None)
        return None if episode is None else time.monotonic() - episode[0]

    def troubled(self, key: str | None = None) -> bool:
        """Whether ``key`` (or, without one, any key) is in trouble now."""
        with self._lock:
            return bool(self._open) if key is None else key in self._open
