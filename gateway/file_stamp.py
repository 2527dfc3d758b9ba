"""What tells a file changed, for what is loaded once and kept while its file stays the same (mappings, partner
certificates, the signing key, a partner's CA file)."""

from __future__ import annotations

import os

Stamp = tuple[int, int, int, int, int]


def file_stamp(path: str | os.PathLike[str]) -> Stamp | None:
    """Device and inode (a file replaced by the atomic rename every tool does), size, and modification and change
    times (one rewritten in place, also by a copy that keeps the old modification time); None when it cannot be
    looked at (loading it says why). A folder's changes when an entry is added or removed (a CA folder hashed by
    c_rehash)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
