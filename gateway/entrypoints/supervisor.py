"""One supervisor for every long-running task of ``gateway serve``.

Like an OTP supervisor or a task group: a task is a *step* (one unit of work, a coroutine) that the
supervisor runs again and again until the stop event. A step returns True when it did work (run it
again at once) and False when it is idle (wait ``every`` seconds). A step that raises is logged once
with its context, counted, and run again after an exponential backoff with jitter; more failures of the
same kind (any of the last few distinct errors of the episode, so errors taking turns too) are counted
quietly until the task works again, when one ``recovered`` line says how many and for how long. So a database locked for a minute is one error line, not sixty.

Transient errors (database locked or gone, serialization failures, timeouts, lost connections) are
retried for as long as they last; a login the database refuses is too (an operator may mend it while the
gateway runs), but logged as an error. A database that no retry mends (SQLite damaged, not a database,
read-only, without its tables: ``faults.database_broken``) ends the process at once, from a step or an
item. Any other error that comes back ``give_up_after`` times in a row means the task cannot recover: the
supervisor sets ``exit_code`` and the stop event, and ``serve`` exits non-zero so that a service manager
restarts it, never a process that looks alive and does nothing.

Work on single items inside a step (one file, one upload) reports its own failures with ``report``:
they are logged and counted the same way, but contained to the item.

Log lines never carry debtor data: errors are written with ``gateway.faults.describe``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import metrics
from gateway import liveness
from gateway.faults import database_broken, database_refused, describe, is_transient

log = logging.getLogger("gateway.supervisor")

Step = Callable[[], Awaitable[bool | None]]
RECENT_ERRORS = 8  # distinct errors a task's episode remembers; a ninth pushes out the oldest (logged again if back)
EXIT_TASK_FAILED = 6  # a background task failed beyond recovery (docs: README exit codes)
__all__ = ["EXIT_TASK_FAILED", "Supervisor", "TaskHealth", "describe", "is_transient"]
def _context(ctx: dict[str, Any]) -> str:
    return "".join(f" {k}={v}" for k, v in ctx.items() if v is not None)


@dataclass
class TaskHealth:
    """What the supervisor knows of one task (also what a health check reports)."""

    name: str
    every: float
    runs: int = 0
    failures: int = 0          # all failures since start
    episode_failures: int = 0  # failures since the task last worked
    consecutive: int = 0       # failed steps in a row (item reports do not count here)
    failing_since: float | None = None
    quiet: int = 0             # failures not logged because the same error was logged already
    signature: str | None = None  # the latest error's
    # The distinct errors of the current episode and how often each came, oldest first, at most ``RECENT_ERRORS``:
    # two errors that take turns (a lock timeout, then a lost connection) are each logged once, not every time.
    recent: dict[str, int] = field(default_factory=dict)
    last_ok: float = field(default_factory=time.monotonic)
    last_step: float = field(default_factory=time.monotonic)  # a step ended, well or not: the task is alive
    last_error: str | None = None


class Supervisor:
    """Starts tasks, restarts failed steps with backoff, and decides when the process must exit."""

    def __init__(self, stop: asyncio.Event, *, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 give_up_after: int = 8) -> None:
        self.stop, self.backoff_base, self.backoff_max = stop, backoff_base, backoff_max
        self.give_up_after = give_up_after
        self.exit_code = 0
        self.broken_database = False
        self.health: dict[str, TaskHealth] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, step: Step, *, every: float, once: bool = False, give_up: bool = True,
              **context: Any) -> asyncio.Task[None]:
        """Run ``step`` until stop (``once``: until it succeeds once); ``context`` goes into its log lines.

        ``give_up=False`` for tasks whose failures come from outside (a partner's API): those are
        retried with backoff for ever, since a restart of the gateway would not mend them.
        """
        health = self.health.setdefault(name, TaskHealth(name, every))
        task = asyncio.create_task(self._run(health, step, context, once, give_up), name=name)
        task.add_done_callback(self._ended)
        self.tasks.append(task)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A task whose loop itself broke (its failure could not even be reported) ends the process, never
        silently: the step's own failures are caught in ``_run``, so this is the supervisor's last word."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        try:
            log.critical("supervisor.task_ended task=%s error=%s: stopping the gateway so that its service manager "
                         "restarts it", task.get_name(), type(exc).__name__)
        finally:
            self.exit_code = EXIT_TASK_FAILED
            self.stop.set()

    async def _run(self, health: TaskHealth, step: Step, context: dict[str, Any], once: bool, give_up: bool) -> None:
        # Long work inside a step (a big file) reports progress, so the task does not look stale meanwhile.
        liveness.bind(lambda: setattr(health, "last_step", time.monotonic()))
        while not self.stop.is_set():
            health.runs += 1
            try:
                busy = await step()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - everything, or a task dies unseen
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                health.consecutive += 1
                health.last_step = time.monotonic()
                self.report(health.name, exc, **context)
                if self.stop.is_set():  # the report ended the gateway (its database broken)
                    return
                if give_up and not is_transient(exc) and health.consecutive >= self.give_up_after:
                    log.critical("supervisor.gave_up task=%s failures=%d error=%s: stopping the gateway so that "
                                 "its service manager restarts it", health.name, health.consecutive, describe(exc))
                    self.exit_code = EXIT_TASK_FAILED
                    self.stop.set()
                    return
                await self.sleep(self.backoff(health.consecutive))
                continue
            if busy or health.consecutive:  # work done, or a failed step runs again: the streak is over
                self.ok(health.name)
            health.consecutive = 0
            health.last_ok = health.last_step = time.monotonic()
            if once:
                return
            if not busy:
                await self.sleep(health.every)
            else:
                await asyncio.sleep(0)  # a busy task still lets the others run

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, at least a tenth of the base."""
        cap = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempt - 1))
        return max(self.backoff_base / 10, random.uniform(0, cap))

    def report(self, name: str, exc: BaseException, **context: Any) -> None:
        """Log and count a failure of task ``name`` (or of one item it works on)."""
        health = self.health.setdefault(name, TaskHealth(name, 1.0))
        text = describe(exc)
        signature = f"{type(exc).__name__}:{text}" if is_transient(exc) else type(exc).__name__ + text
        health.failures += 1
        health.episode_failures += 1
        metrics.TASK_FAILURES.labels(name).inc()
        health.last_error = text
        if health.failing_since is None:
            health.failing_since = time.monotonic()
        if database_broken(exc):
            self._database_broken(name, text, context)
            return
        health.signature = signature
        seen = health.recent.pop(signature, 0)
        health.recent[signature] = seen + 1  # to the end: the latest
        if seen:
            health.quiet += 1
            log.debug("supervisor.still_failing task=%s failures=%d error=%s%s", name, seen + 1, text,
                      _context(context))
            return
        while len(health.recent) > RECENT_ERRORS:
            del health.recent[next(iter(health.recent))]
        # A login the database refuses (a password changed under the running gateway) is retried like a lost
        # connection, since the operator may change it back, but it waits for someone: an error, not a warning.
        level = logging.WARNING if is_transient(exc) and not database_refused(exc) else logging.ERROR
        log.log(level, "supervisor.task_failed task=%s transient=%s error=%s%s", name,
                str(is_transient(exc)).lower(), text, _context(context))

    def _database_broken(self, name: str, text: str, context: dict[str, Any]) -> None:
        """The gateway's own database file is damaged, not a database, read-only or without its tables: no retry
        mends it, and every one works on a damaged file (or, counted against a file, would fail a client's file for
        it). The process ends at once, whichever task or item met it, so that the operator sees it."""
        if not self.broken_database:  # once: other tasks meet it too before they see the stop
            self.broken_database = True
            log.critical("supervisor.database_broken task=%s error=%s%s: the gateway's database cannot be used as it "
                         "is (damaged, not a database, read-only or without its tables) and no retry mends that: "
                         "stopping the gateway; check the file (PRAGMA integrity_check, its permissions) or restore "
                         "it from a backup (docs/operations.md)", name, text, _context(context))
        self.exit_code = EXIT_TASK_FAILED
        self.stop.set()

    def ok(self, name: str) -> None:
        """Task ``name`` completed a unit of work: a failure streak, if any, is over."""
        health = self.health.setdefault(name, TaskHealth(name, 1.0))
        health.last_ok = time.monotonic()
        if health.failing_since is not None:
            log.info("supervisor.task_recovered task=%s failures=%d errors=%d seconds=%.1f", name,
                     health.episode_failures, len(health.recent), time.monotonic() - health.failing_since)
        health.failing_since, health.signature, health.quiet, health.episode_failures = None, None, 0, 0
        health.recent.clear()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until stop, whichever comes first."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def join(self, timeout: float) -> list[str]:
        """Wait for every task to end (after stop); returns the names of those still running."""
        if not self.tasks:
            return []
        _, pending = await asyncio.wait(self.tasks, timeout=timeout)
        return sorted(t.get_name() for t in pending)
