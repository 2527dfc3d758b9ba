"""A reader run in a child process under memory, CPU and time limits: its failure is data, never a crash.

Native parsers (calamine in Rust, libxml2) can abort the interpreter on a hostile file (an allocation
of 512 GiB is a SIGABRT, not a MemoryError) or take gigabytes. Here the registered reader runs in a
fresh interpreter (``python -m gateway.readers.isolated``) started with ``subprocess``: safe beside
``serve``'s threads (a plain fork would copy locks other threads hold), and unlike multiprocessing's
spawn and forkserver it does not re-import the gateway's main module in every child (the CLI takes
~0.5 s to import). A file costs ~0.1 s of start-up (docs/benchmarks.md). The child sets ``RLIMIT_AS``
(its whole address space: calamine's allocations, malloc arenas and mmaps alike; measured against
``RLIMIT_DATA`` in docs/benchmarks.md) and ``RLIMIT_CPU``, then sends the header and batches of
``SourceRow``s as length-prefixed msgpack on its stdout. The pipe holds 64 KB, so the child waits
while the parent maps and stores: the parent keeps one batch (<= 500 rows, ~1 MB), whatever the file.

Every way the child can end early becomes an ``InputError`` naming the limit to raise (never file
content): an exception (its ``InputError`` passed through, anything else by its type only), an abort
(an allocation over the limit), SIGXCPU/SIGKILL, a silent exit, or no batch within
``reader_timeout_seconds`` of waiting in total. The child dies with its parent (``PR_SET_PDEATHSIG``,
and a broken pipe at its next write) and is killed by ``close()``.
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import msgspec

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.mapping.spec import FormatSpec
from gateway.readers.base import SourceRow

BATCH_ROWS = 500
BATCH_BYTES = 1 << 20  # text per batch: the parent holds one batch however wide the rows are
_PR_SET_PDEATHSIG = 1
_LABEL = {"xlsx": "spreadsheet", "xls": "spreadsheet", "ods": "spreadsheet", "xml": "XML document"}


class Job(msgspec.Struct):
    target: str
    file: str
    fmt: FormatSpec
    date_columns: list[str]
    limits: LimitsConfig


class Head(msgspec.Struct, tag="h"):
    header: list[str]
    header_row: int
    delimiter: str | None = None


class Batch(msgspec.Struct, tag="b"):
    rows: list[SourceRow]


class Fail(msgspec.Struct, tag="f"):
    message: str
    row: int | None = None
    column: str | None = None
    memory: bool = False


class Done(msgspec.Struct, tag="d"):
    peak_kb: int


Message = Head | Batch | Fail | Done
_decoder = msgspec.msgpack.Decoder(Message)


class IsolatedReader:
    """The reader registered at ``target`` run in a child process; same protocol as any reader."""

    WAIT_SLICE = 1.0  # seconds of one wait for the child; a wait counts at most this plus WAIT_SLACK
    WAIT_SLACK = 0.5

    def __init__(self, target: str, path: str | os.PathLike[str], fmt: FormatSpec, limits: LimitsConfig, *,
                 date_columns: frozenset[str] = frozenset()) -> None:
        self.file = str(path)
        self._limits, self._kind = limits, _LABEL.get(fmt.type, "file")
        self._waited, self._buf, self._finished = 0.0, bytearray(), False
        self.peak_kb = 0
        self.delimiter: str | None = None
        job = Job(target=target, file=self.file, fmt=fmt, date_columns=sorted(date_columns), limits=limits)
        # -P: the working directory is not put on the child's import path (``-m`` would), so a module lying there
        # (a ``gateway`` or ``lxml`` folder in serve's directory) is never what reads a client's file.
        self._proc = subprocess.Popen([sys.executable, "-P", "-m", "gateway.readers.isolated"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      close_fds=True)
        try:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._fd = self._proc.stdout.fileno()
            try:
                self._proc.stdin.write(msgspec.msgpack.encode(job))
                self._proc.stdin.close()
            except OSError:
                pass  # the child is already gone: reading says why
            head = self._next()
            if not isinstance(head, Head):
                raise InputError(f"the {self._kind} reader sent no header", file=self.file)
            self.header, self.header_row, self.delimiter = head.header, head.header_row, head.delimiter
        except BaseException:
            self.close()
            raise

    def _read(self, n: int) -> bytes:
        """``n`` bytes from the child, waiting at most what is left of the time budget."""
        while len(self._buf) < n:
            budget = self._limits.reader_timeout_seconds - self._waited
            # Waited in slices, each counted at most for its own length (and a little scheduling slack): a node
            # frozen while it waits (SIGSTOP, a VM paused, a laptop lid) comes back with the whole freeze on the
            # clock, and a sound file failed "took longer than" at once. Time the process did not run is no
            # time the reader took.
            wait = min(max(budget, 0.0), self.WAIT_SLICE)
            started = time.monotonic()
            # poll, not select: select refuses descriptors from 1024 on, which a serve with many connections
            # (and a raised descriptor limit) hands out, and every spreadsheet and XML file failed then.
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            ready = poller.poll(wait * 1000)
            self._waited += min(time.monotonic() - started, wait + self.WAIT_SLACK)
            if not ready and self._waited < self._limits.reader_timeout_seconds:
                continue
            if not ready:
                self.close()
                raise InputError(f"reading the {self._kind} took longer than "
                                 f"{self._limits.reader_timeout_seconds:g} s (limit limits.reader_timeout_seconds); "
                                 "split the file or raise the limit", file=self.file)
            chunk = os.read(self._fd, max(n - len(self._buf), 1 << 16))
            if not chunk:
                raise self._died()
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _next(self) -> Message:
        """The child's next message; any way it ends without one is an InputError."""
        size = int.from_bytes(self._read(4), "big")
        msg = _decoder.decode(self._read(size))
        if isinstance(msg, Fail):
            self.close()
            if msg.memory:
                raise self._memory()
            raise InputError(msg.message, file=self.file, row=msg.row, column=msg.column)
        return msg

    def _died(self) -> InputError:
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        if code in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGBUS):
            return self._memory()  # a native allocation over RLIMIT_AS aborts; the OOM killer sends SIGKILL
        if code == -signal.SIGXCPU:
            return InputError(f"reading the {self._kind} needs more than {self._limits.reader_cpu_seconds} s of CPU "
                              "time (limit limits.reader_cpu_seconds); split the file or raise the limit",
                              file=self.file)
        if code is not None and code < 0:
            return InputError(f"the {self._kind} parser crashed on this file (signal {signal.Signals(-code).name}); "
                              "the file is damaged or not what its name says", file=self.file)
        return InputError(f"the {self._kind} reader stopped without finishing (exit code {code}); the file "
                          "is damaged or not what its name says", file=self.file)

    def _memory(self) -> InputError:
        return InputError(f"the {self._kind} needs more than {self._limits.reader_memory_mb} MB to read (limit "
                          "limits.reader_memory_mb); it declares far more cells than it holds, or it is too large: "
                          "split it, save it as CSV, or raise the limit", file=self.file)

    def __iter__(self) -> Iterator[SourceRow]:
        while not self._finished:
            msg = self._next()
            if isinstance(msg, Batch):
                yield from msg.rows
            elif isinstance(msg, Done):
                self._finished, self.peak_kb = True, msg.peak_kb
                self.close()

    def close(self) -> None:
        """Stop the child (if still running) and release the pipe."""
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _limit_self(limits: LimitsConfig) -> None:
    try:  # the kernel kills us when the gateway dies, even inside a long native call
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the broken pipe at the next write still ends us
    memory = limits.reader_memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = max(1, limits.reader_cpu_seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _child_main() -> None:
    """Child process body: read with the registered reader, stream what it yields, report how it ended."""
    out = sys.stdout.buffer
    job = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=Job)
    if os.getppid() == 1:
        os._exit(0)  # the gateway died before we started
    _limit_self(job.limits)
    encode = msgspec.msgpack.Encoder().encode

    def send(msg: Message) -> None:
        data = encode(msg)
        out.write(len(data).to_bytes(4, "big"))
        out.write(data)
        out.flush()

    batch: list[SourceRow] = []
    try:
        module, _, name = job.target.partition(":")
        cls: Any = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls).parameters
        options: dict[str, Any] = {"limits": job.limits} if "limits" in params else {}
        if "date_columns" in params:
            options["date_columns"] = frozenset(job.date_columns)
        reader = cls(job.file, job.fmt, **options)
        with reader:
            send(Head(list(reader.header), reader.header_row, getattr(reader, "delimiter", None)))
            size = 0
            for src in reader:
                batch.append(src)
                size += sum(map(len, src.values))
                if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
                    send(Batch(batch))
                    batch, size = [], 0
            if batch:
                send(Batch(batch))
                batch = []
        send(Done(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    except (BrokenPipeError, ConnectionResetError):
        os._exit(0)  # the gateway closed the reader early: nobody is listening
    except MemoryError:
        batch.clear()  # what is left of the memory is for the message
        _send_fail(send, Fail("", memory=True))
    except InputError as exc:
        _send_fail(send, Fail(_bare(exc), exc.row, exc.column), batch)
    except Exception as exc:  # noqa: BLE001 - any parser error means "this file cannot be read"
        _send_fail(send, Fail(unreadable(job.fmt.type, exc)), batch)
    os._exit(0)


def _send_fail(send: Callable[[Message], None], fail: Fail, read: list[SourceRow] | None = None) -> None:
    """``fail`` after the rows read before it that were not sent yet."""
    # The rows before the failure are the gateway's as a CSV's are (stored, acked row by row, the failure
    # after them): held back here, up to 499 rows before it were in no ack and no claim, without a word.
    try:
        if read:
            send(Batch(read))
        send(fail)
    except (OSError, MemoryError):
        os._exit(1)


def _bare(exc: InputError) -> str:
    """The message without the "file, row N, column 'x': " prefix that InputError adds."""
    # Not by cutting str(exc): that names the file by its base name, and an ingest reads the file through
    # /proc/<pid>/fd/<n>, so the prefix was "27, row 1: " and stayed in front of the client's message.
    return exc.message


def unreadable(kind: str, exc: BaseException) -> str:
    """A message for a parser's unexpected exception: its kind, never its text (which may quote the file)."""
    what = {"xlsx": "XLSX workbook", "xls": "XLS workbook", "ods": "ODS spreadsheet", "xml": "XML document",
            "csv": "CSV file", "fixed_width": "fixed-width file"}.get(kind, "file")
    return (f"the {what} cannot be read: the parser failed with {type(exc).__name__}; the file is damaged, "
            "uses a feature the reader does not support, or is not what its name says")


if __name__ == "__main__":
    _child_main()
