"""A slow writer, run as its own process: copies SOURCE to DEST in chunks with real pauses.

Modes: ``hold`` (one handle open across the pauses), ``append`` (open, append, close per chunk),
``rename`` (append per chunk to ``DEST.part``, rename at the end), ``wait`` (write all, then keep the
handle open until a line arrives on stdin). ``--marker`` drops ``DEST.done`` at the end. Exit 3 when the
file was deleted while this writer was still writing it (its data would be lost).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def chunks(data: bytes, n: int) -> list[bytes]:
    """``n`` pieces cut at line ends, so each pause falls between whole rows."""
    lines = data.splitlines(keepends=True)
    step = -(-len(lines) // n)
    return [b"".join(lines[i:i + step]) for i in range(0, len(lines), step)]


def written(fd: int) -> None:
    os.fsync(fd)
    if os.fstat(fd).st_nlink == 0:
        print("deleted while open for writing", file=sys.stderr)
        sys.exit(3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["hold", "append", "rename", "wait"])
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--pause", type=float, default=1.5)
    p.add_argument("--marker", action="store_true")
    a = p.parse_args()
    with open(a.source, "rb") as fh:
        parts = chunks(fh.read(), a.chunks)
    target = a.dest + ".part" if a.mode == "rename" else a.dest
    if a.mode in ("hold", "wait"):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        for i, part in enumerate(parts):
            if i and a.mode == "hold":
                time.sleep(a.pause)
            os.write(fd, part)
            written(fd)
        if a.mode == "wait":
            print("written", flush=True)
            sys.stdin.readline()
            written(fd)
        os.close(fd)
    else:
        for i, part in enumerate(parts):
            if i:
                time.sleep(a.pause)
            # later chunks never create the file: if it was removed meanwhile, that is the failure
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if i == 0 else 0))
            os.write(fd, part)
            written(fd)
            os.close(fd)
        if a.mode == "rename":
            os.rename(target, a.dest)
    if a.marker:
        open(a.dest + ".done", "wb").close()


if __name__ == "__main__":
    main()
