"""The ODS pre-check in serve's own process (``sheet_size``) reads content.xml once, whatever its rows' length."""

from __future__ import annotations

import random
import subprocess
import sys

from gateway.config import LimitsConfig
from gateway.readers import sheet_size

END = b"</table:table-row>"

SCAN = """
import resource, sys
from gateway.config import LimitsConfig
from gateway.readers.sheet_size import _check_ods
resource.setrlimit(resource.RLIMIT_CPU, (8, 9))
plain, closing = bytes(1 << 16), bytes(100) + b"</table:table-row>" + bytes((1 << 16) - 118)

def chunks():
    for _ in range(40):  # 40 rows of ~15.5 MB (under the 16 MB at which the scan gives up), in 64 KB chunks
        for _ in range(236):
            yield plain
        yield closing

_check_ods("x", chunks(), LimitsConfig())
print("scanned")
"""


def test_long_rows_cost_one_pass() -> None:
    # Joined and searched again at every chunk, a row of 15 MB cost its size squared over the chunk size: a 7 MB
    # ODS upload (1 GiB of such rows, zip ratio under 200) took 14 s of CPU, a minute under load, in serve's
    # process. Here 620 MB in 64 KB chunks took ~35 s of CPU, one pass ~2 s; 8 s are allowed: a bound in CPU
    # seconds with a wide margin either way, not a clock.
    done = subprocess.run([sys.executable, "-c", SCAN], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "scanned", (done.returncode, done.stderr[-500:])


def test_rows_are_cut_where_they_end_however_the_chunks_fall() -> None:
    rnd = random.Random(5)
    for _ in range(2000):
        parts: list[bytes] = []
        for _ in range(rnd.randrange(0, 8)):
            parts += [bytes(rnd.choice(b"ab<") for _ in range(rnd.randrange(0, 30))), END]
        text = b"".join(parts) + b"x" * rnd.randrange(0, 5)
        cuts = sorted(rnd.sample(range(1, len(text)), min(rnd.randrange(12), len(text) - 1))) if len(text) > 1 else []
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        seen: list[bytes] = []

        def counted(file: str, data: bytes, rows: int, limits: LimitsConfig) -> int:
            seen.append(data)  # the scan's cuts: the row counting itself is what it always was
            return rows

        real = sheet_size._count_ods_rows
        sheet_size._count_ods_rows = counted
        try:
            sheet_size._check_ods("x", iter(pieces), LimitsConfig())
        finally:
            sheet_size._count_ods_rows = real
        assert b"".join(seen) == text
        assert all(d.endswith(END) for d in seen[:-1]) and END not in seen[-1]
