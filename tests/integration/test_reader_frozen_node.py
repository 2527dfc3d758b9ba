"""A node frozen while it waits for its reader child (SIGSTOP of the whole process group, as a paused VM or a
long stall freezes both) is not charged the frozen time as reading time: before, the wait came back with the
whole freeze on the clock and a sound file failed "reading the ... took longer than ..." at once.

The file comes through a FIFO this test writes, so the gateway side is certainly waiting on its child when the
freeze comes: the CSV reader in the reader child (the spreadsheet and XML readers seek, which a FIFO cannot). A
real SIGSTOP/SIGCONT, a real reader child."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = """
import sys
from gateway.config import LimitsConfig
from gateway.mapping.spec import FormatSpec
from gateway.readers.isolated import IsolatedReader
spec = FormatSpec(type="csv", delimiter=";", encoding="utf-8")
reader = IsolatedReader("gateway.readers.csv_reader:CsvReader", sys.argv[1], spec,
                        LimitsConfig(reader_timeout_seconds=float(sys.argv[2])))
print("ready", flush=True)
try:
    print("rows", sum(1 for _ in reader), flush=True)
except Exception as exc:
    print("error", exc, flush=True)
"""

# The reader's wait budget, and a freeze longer than all of it. What is counted of the budget is the child's
# start (its header), at most 1.5 s for the frozen wait, and the rest of the file: the budget leaves room for a
# loaded machine (with 3 s, a test process late to send its SIGSTOP could have a whole first wait counted too).
TIMEOUT, FROZEN = 5, 8


def _open_writer(fifo: Path, deadline: float) -> int:
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: the reader child has not opened it yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_a_freeze_while_waiting_for_the_reader_is_not_reading_time(tmp_path: Path) -> None:
    fifo = tmp_path / "claims.csv"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(fifo), str(TIMEOUT)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    fd = -1
    try:
        fd = _open_writer(fifo, time.monotonic() + 30)
        os.set_blocking(fd, True)
        os.write(fd, b"Ref;Betrag\n" + b"".join(b"R%d;10\n" % n for n in range(100)))
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # the gateway side waits on its child, which waits on the rest of the file
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(FROZEN)
        os.killpg(proc.pid, signal.SIGCONT)
        os.write(fd, b"".join(b"R%d;10\n" % n for n in range(100, 200)))
        os.close(fd)
        fd = -1
        out, _ = proc.communicate(timeout=60)
    finally:
        if fd >= 0:
            os.close(fd)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert out.strip() == "rows 200", out
