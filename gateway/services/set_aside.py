"""Setting aside a file the gateway failed to process again and again, so it cannot block or loop.

Files that are merely unusable never come here: a reader failure is an ``input_error`` ack like any
other. This is for the unexpected (a bug, a broken disk): after ``supervisor.file_attempts`` failures
that were not transient, the file moves to ``inbox/<client>/failed/`` (outside the client's SFTP view),
its submission, if one was opened, is marked ``failed`` with the reason, and the client's ack folder
gets one ``failed`` line saying so. Rows acknowledged before the failure keep their claims. The
operator moves the file back into ``upload/`` once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from gateway.bootstrap import App
from gateway.domain.findings import Finding
from gateway.services.ack import NAME_MAX, AckWriter, fit_name, sibling
from gateway.services.ingest import ack_path_for, sha256_file
from gateway.store import submissions as sub_store
from gateway.store.db import write_tx

log = logging.getLogger(__name__)
FAILED_DIR = "failed"


def _move(path: Path, target: Path) -> None:
    """``os.replace``, or across file systems (an upload folder that is its own mount, a share) a copy made
    durable under a temporary name, renamed into place, then the original removed."""
    try:
        os.replace(path, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        os.unlink(path)
    except OSError:
        # The original cannot go (a read-only share): it stays in upload/ and is offered again, so the copy goes,
        # or each later try would leave one more copy of the file in failed/.
        with contextlib.suppress(OSError):
            target.unlink()
        raise


def set_aside(app: App, client_id: str, path: Path, reason: str, attempts: int) -> Path | None:
    """Move ``path`` out of the inbox with a failed ack; returns where it went (None if it was gone)."""
    if not path.is_file():
        return None
    sha, _ = sha256_file(path)
    with write_tx(app.engine) as conn:
        sub = sub_store.find_duplicate(conn, client_id, sha)
        if sub is not None and sub["status"] == "processing":
            sub_store.finish(conn, sub["id"], status="failed", error=f"set aside after {attempts} attempts: {reason}",
                             ack_path=sub["ack_path"])
    # The ack first, then the move: a file moved whose ack then failed (or a stop in between) left the client
    # without an answer for good, the file gone from its upload folder; a file acked whose move fails stays in
    # upload/ and is offered again, set aside at a later try, its ack written again.
    with AckWriter(ack_path_for(app, client_id, path.name)) as w:
        w.row(None, None, "failed", None, [Finding(
            code="internal_error",
            message=f"the gateway could not process this file ({attempts} attempts, last error {reason}); "
                    "it is set aside for the operator, who has been told; rows acknowledged before stay")])
        w.commit()
    folder = app.config.inbox_dir / client_id / FAILED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = folder / fit_name(f"{stamp}-{path.name}", NAME_MAX)
    _move(path, target)
    marker = sibling(path, ".done")
    if marker is not None:
        marker.unlink(missing_ok=True)
    log.error("inbox.set_aside client=%s file=%s attempts=%d error=%s target=%s", client_id, path.name, attempts,
              reason, target)
    return target
