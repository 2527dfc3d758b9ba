"""A batch file the directory adapter finds already in place is made durable before it is confirmed.

Its writer puts the name in place (a hard link of its flushed temp file) and then flushes the folder; a writer
that died in between (or a stale worker still running beside the one that took its row over) leaves a name that
a power cut can take away. The retry that finds it confirmed the batch without flushing the folder: the claims
were recorded handed over on a directory entry that was not on disk yet. Observed on the real adapter in a
process of its own, its system calls traced (strace).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
from adapters.base import Batch
from adapters.directory import DirectoryAdapter
batch = Batch(batch_id="B-1", partner_id="nord", filename="B-1.xml.p7m", payload=b"0\\x82cms", claim_ids=[1])
print(DirectoryAdapter("nord", {"path": sys.argv[1]}).deliver(batch).batch_id)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the adapter's fsync calls")
def test_a_batch_found_in_place_is_flushed_before_it_is_confirmed(tmp_path: Path) -> None:
    folder = tmp_path / "nord"
    folder.mkdir()
    (folder / "B-1.xml.p7m").write_bytes(b"0\x82cms")  # in place, as a writer that died before its folder's flush
    trace = tmp_path / "trace"
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,fsync", "-o", str(trace), sys.executable,
                           "-c", SCRIPT, str(folder)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "B-1"  # confirmed, not written again
    calls = trace.read_text()
    opened = re.findall(rf'openat\([^,]+, "{re.escape(str(folder))}", O_RDONLY[^)]*O_DIRECTORY[^)]*\) = (\d+)', calls)
    assert opened, "the folder was never opened to be flushed"
    assert any(re.search(rf"fsync\({fd}\) += 0", calls) for fd in opened), "the folder was not flushed"
