"""A process-pool task that kills its worker on the third chunk (imported by the spawned worker)."""

from __future__ import annotations

import os

from gateway.services.ingest_store import StoredChunk, decode_rows, work


def dying_work(chunk_no: int, data: bytes) -> StoredChunk | None:
    if decode_rows(data)[0].row > 200:
        os._exit(3)  # as if the OOM killer took the worker
    return work(chunk_no, data)


def dying_after_store(chunk_no: int, data: bytes) -> StoredChunk | None:
    done = work(chunk_no, data)
    if decode_rows(data)[0].row > 200:
        os._exit(3)  # its chunk is committed, but its answer never reaches the ingesting process
    return done
