"""``read_sample`` in a child process under the readers' limits, for samples that come from a browser.

``read_sample`` itself opens spreadsheets and XML through the isolated readers, but it works out an XML file's
record layout with lxml in its own process (``sample._xml_layout``) and sniffs CSV encodings there. A sample an
operator uploads in the web console is as untrusted as any client file, so the whole of ``read_sample`` runs
here in a fresh interpreter with the same ``RLIMIT_AS``/``RLIMIT_CPU`` as the reader children
(``readers.isolated``) and ``reader_timeout_seconds`` of wall-clock time. Every way it can end early is an
``InputError`` naming the limit, never file content.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.mapping.sample import Sample


class _Job(msgspec.Struct):
    file: str
    format_type: str | None
    limits: LimitsConfig


@dataclass
class _Answer:
    sample: Sample | None = None
    error: str | None = None


def read_sample_isolated(path: Path, format_type: str | None, limits: LimitsConfig) -> Sample:
    """``read_sample(path, format_type, limits)`` run in a limited child process."""
    job = msgspec.msgpack.encode(_Job(str(path), format_type, limits))
    try:
        done = subprocess.run([sys.executable, "-P", "-m", "gateway.mapping.sample_isolated"], input=job,
                              capture_output=True, timeout=limits.reader_timeout_seconds, close_fds=True)
    except subprocess.TimeoutExpired:
        raise InputError(f"reading the sample took longer than {limits.reader_timeout_seconds:g} s (limit "
                         "limits.reader_timeout_seconds)", file=path.name) from None
    if done.returncode in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGBUS):
        raise InputError(f"the sample needs more than {limits.reader_memory_mb} MB to read (limit "
                         "limits.reader_memory_mb)", file=path.name)
    if done.returncode == -signal.SIGXCPU:
        raise InputError(f"reading the sample needs more than {limits.reader_cpu_seconds} s of CPU time (limit "
                         "limits.reader_cpu_seconds)", file=path.name)
    try:
        answer = msgspec.msgpack.decode(done.stdout, type=_Answer)
    except msgspec.DecodeError:
        raise InputError(f"the sample reader stopped without an answer (exit code {done.returncode}); the file is "
                         "damaged or not what its name says", file=path.name) from None
    if answer.sample is None:
        raise InputError(answer.error or "the sample cannot be read", file=path.name)
    return answer.sample


def _child_main() -> None:
    from gateway.mapping.sample import read_sample
    from gateway.readers.isolated import _limit_self, unreadable  # the reader children's own limits
    job = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=_Job)
    _limit_self(job.limits)
    try:
        answer = _Answer(sample=read_sample(Path(job.file), job.format_type, job.limits))
    except MemoryError:
        answer = _Answer(error=f"the sample needs more than {job.limits.reader_memory_mb} MB to read (limit "
                               "limits.reader_memory_mb)")
    except InputError as exc:
        answer = _Answer(error=str(exc).replace(job.file, Path(job.file).name))
    except Exception as exc:  # noqa: BLE001 - any parser error means "this file cannot be read"
        answer = _Answer(error=unreadable(job.format_type or Path(job.file).suffix.lstrip("."), exc))
    sys.stdout.buffer.write(msgspec.msgpack.encode(answer))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    _child_main()
