"""Inbox use cases: ingest a file a client dropped, and finish what a crash interrupted."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from gateway.bootstrap import App
from gateway.domain.findings import Finding
from gateway.services.ack import AckWriter
from gateway.services.ingest import IngestResult, ack_path_for, ingest_file, resume
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".filepart", ".tmp", ".partial", ".crdownload", ".done")


def is_candidate(path: Path) -> bool:
    """A file that may be a finished upload: not a temp name, not a dot file, not a marker."""
    name = path.name
    return not name.startswith(".") and not name.lower().endswith(TEMP_SUFFIXES) and not name.startswith("~$")


def process_inbox_file(app: App, client_id: str, path: Path, channel: str = "watch") -> IngestResult:
    """Ingest a complete upload, then remove it from the inbox (its bytes are kept encrypted)."""
    result = ingest_file(app, path, client_id, channel=channel)
    if result.status == "duplicate":
        ack = ack_path_for(app, client_id, result.filename)
        if not ack.exists():  # a re-upload under a new name gets its own answer; an old ack is never replaced
            with AckWriter(ack) as w:
                w.row(None, None, "duplicate", None, [Finding(
                    code="duplicate_file", message=f"this file was already submitted as {result.duplicate_of}")])
                w.commit()
        result.ack_path = str(ack)
    # The submission (with the raw bytes) is committed: removing the plain copy loses nothing.
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".done").unlink(missing_ok=True)
    return result


def resume_unfinished(app: App) -> list[IngestResult]:
    """Finish every submission a crash left in ``processing``, from its stored raw bytes."""
    with read_tx(app.engine) as conn:
        pending = sub_store.unfinished(conn)
    results = []
    for sub in pending:
        log.warning("ingest.resume submission=%s file=%s", sub["reference"], sub["filename"])
        with tempfile.TemporaryDirectory(prefix="gateway-resume-") as tmp:
            path = Path(tmp) / (sub["filename"] or "payload")
            with read_tx(app.engine) as conn, open(path, "wb") as fh:
                for chunk in sub_store.read_payload(conn, app.cipher, sub["id"]):
                    fh.write(chunk)
            results.append(resume(app, sub, path))
    return results
