"""An SFTP partner that moves each file away on arrival gets every batch exactly once, whatever answer is lost.

The real adapter against the asyncssh partner simulator: the partner takes each arriving file into
``processed/`` before it answers, and the answer is lost after the upload, after the marker, after the
rename, or after several of them in turn. Each batch is retried (a fresh payload per attempt, as CMS
encryption is randomised) until it is confirmed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from adapters.base import Batch, Receipt
from adapters.sftp import SftpAdapter
from adapters.sftp_handover import MARKER_DIR
from adapters.simulators.agency import Agency
from adapters.simulators.files import PROCESSED
from adapters.simulators.sftp_sim import Point, SftpAgencySimulator
from gateway.errors import DeliveryError

# Lost answers per batch, in protocol order; the batches cycle through these.
LOSSES: list[tuple[Point, ...]] = [
    (), ("upload",), ("marker",), ("rename",), ("upload", "marker"), ("upload", "rename"), ("marker", "rename"),
    ("upload", "marker", "rename"), ("upload", "upload", "marker", "rename"),
]
BATCHES = 36


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[tuple[SftpAgencySimulator, SftpAdapter]]:
    client = asyncssh.generate_private_key("ssh-ed25519")
    key = tmp_path / "client"
    key.write_bytes(client.export_private_key())
    sim = SftpAgencySimulator(Agency("p"), tmp_path / "root", client.export_public_key().decode(),
                              move_away=True).start()
    adapter = SftpAdapter("p", {"host": "127.0.0.1", "port": sim.port, "username": "gateway",
                                "client_key": str(key), "host_key": sim.host_key_line, "timeout": 5})
    yield sim, adapter
    adapter.close()
    sim.stop()


def attempt_payload(batch_id: str, attempt: int) -> bytes:
    return f"<batch><batchId>{batch_id}</batchId><attempt>{attempt}</attempt></batch>".encode() * 50


def deliver_until_confirmed(adapter: SftpAdapter, batch_id: str, sent: list[bytes]) -> Receipt:
    """What the outbox does: render again and retry while the error is retryable."""
    for attempt in range(1, 10):
        sent.append(attempt_payload(batch_id, attempt))
        try:
            return adapter.deliver(Batch(batch_id=batch_id, partner_id="p", filename=f"{batch_id}.xml.p7m",
                                         payload=sent[-1], claim_ids=[1]))
        except DeliveryError as exc:
            assert exc.retryable, exc
    raise AssertionError(f"batch {batch_id} never confirmed")


def test_every_batch_arrives_once_at_a_partner_that_moves_files_away(
        partner: tuple[SftpAgencySimulator, SftpAdapter], tmp_path: Path) -> None:
    sim, adapter = partner
    root = tmp_path / "root"
    sent: dict[str, list[bytes]] = {}
    receipts: dict[str, Receipt] = {}
    for i in range(BATCHES):
        batch_id = f"deliver-demo-{i:03d}"
        for point in LOSSES[i % len(LOSSES)]:
            sim.lose_answer_after(point)
        receipts[batch_id] = deliver_until_confirmed(adapter, batch_id, sent.setdefault(batch_id, []))
        assert sim.points_left() == [], f"batch {batch_id}: not every planned lost answer happened"

    names = {f"{b}.xml.p7m" for b in sent}
    assert sim.duplicate_arrivals() == {}
    assert dict(sim.arrivals) == dict.fromkeys(names, 1)
    processed = {p.name: p.read_bytes() for p in (root / PROCESSED).iterdir()}
    assert set(processed) == names  # nothing arrived twice, nothing is missing
    for batch_id, payloads in sent.items():
        assert processed[f"{batch_id}.xml.p7m"] in payloads  # one attempt's upload, whole
    assert not [p for p in root.iterdir() if not p.name.startswith(".") and p.name != PROCESSED]
    # Only uploads whose answer was lost before a marker named them stay behind (hidden, pruned later).
    lost_uploads = sum(LOSSES[i % len(LOSSES)].count("upload") for i in range(BATCHES))
    assert len([p for p in root.iterdir() if p.name.endswith(".part")]) == lost_uploads
    assert len(list((root / MARKER_DIR).iterdir())) == BATCHES
    confirmed = [b for i, b in enumerate(sent) if LOSSES[i % len(LOSSES)][-1:] == ("rename",)]
    assert confirmed and all(receipts[b].detail == "confirmed by marker" for b in confirmed)


def test_a_resend_after_success_is_confirmed_not_sent(partner: tuple[SftpAgencySimulator, SftpAdapter]) -> None:
    sim, adapter = partner
    batch = Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"one", claim_ids=[1])
    assert adapter.deliver(batch).detail.startswith("uploaded")
    again = Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"two", claim_ids=[1])
    assert adapter.deliver(again).detail == "confirmed by marker"
    assert dict(sim.arrivals) == {"B-1.xml.p7m": 1}


def test_two_attempts_at_one_batch_at_once_hand_over_one_upload(
        partner: tuple[SftpAgencySimulator, SftpAdapter], tmp_path: Path) -> None:
    """A lease broken while its worker still uploads: the first marker wins, the other attempt confirms."""
    sim, adapter = partner
    reached, release = sim.hold_after_upload()
    receipts: list[Receipt] = []

    def slow() -> None:
        receipts.append(adapter.deliver(Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m",
                                              payload=b"slow", claim_ids=[1])))
    worker = threading.Thread(target=slow)
    worker.start()
    assert reached.wait(10)
    fast = adapter.deliver(Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"fast",
                                 claim_ids=[1]))
    release.set()
    worker.join(10)
    assert fast.detail.startswith("uploaded") and [r.detail for r in receipts] == ["confirmed by marker"]
    assert dict(sim.arrivals) == {"B-1.xml.p7m": 1}
    assert (tmp_path / "root" / PROCESSED / "B-1.xml.p7m").read_bytes() == b"fast"
    assert not list((tmp_path / "root").glob("*.part"))  # the loser took its upload back


def test_old_markers_and_orphaned_uploads_are_pruned(partner: tuple[SftpAgencySimulator, SftpAdapter],
                                                     tmp_path: Path) -> None:
    sim, adapter = partner
    root = tmp_path / "root"
    (root / MARKER_DIR).mkdir()
    old, recent = time.time() - 61 * 86400, time.time() - 59 * 86400
    files = {"old-marker": root / MARKER_DIR / "B-old", "recent-marker": root / MARKER_DIR / "B-recent",
             "old-upload": root / ".B-old.xml.p7m.0123456789abcdef.part",
             "young-upload": root / ".B-recent.xml.p7m.0123456789abcdef.part",
             "not-ours": root / ".partner-own.part"}
    for what, path in files.items():
        path.write_text(".B-recent.xml.p7m.0123456789abcdef.part\n" if what == "recent-marker" else what)
        os.utime(path, (recent, recent) if what in ("recent-marker", "young-upload") else (old - 86400,) * 2)
    adapter.deliver(Batch(batch_id="B-new", partner_id="p", filename="B-new.xml.p7m", payload=b"x", claim_ids=[1]))
    assert not files["old-marker"].exists() and not files["old-upload"].exists()
    assert files["recent-marker"].exists() and files["young-upload"].exists() and files["not-ours"].exists()
    assert (root / MARKER_DIR / "B-new").exists()
