"""The directory adapter: atomic, idempotent, and honest about which failures to retry."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest

from adapters import PartnerAdapter, load_adapter
from adapters.base import Batch
from adapters.directory import DirectoryAdapter
from gateway.errors import ConfigError, DeliveryError


PAYLOAD = b"\x30\x82encrypted"


def batch(payload: bytes = PAYLOAD, filename: str = "B-1.p7m") -> Batch:
    return Batch(batch_id="B-1", partner_id="nord", filename=filename, payload=payload,
                 claim_ids=[1, 2], content_type="application/pkcs7-mime")


def adapter(path: Path) -> DirectoryAdapter:
    return DirectoryAdapter("nord", {"path": str(path)})


def test_deliver_writes_file_atomically_and_returns_receipt(tmp_path: Path) -> None:
    receipt = adapter(tmp_path).deliver(batch())
    assert (tmp_path / "B-1.p7m").read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B-1.p7m"]  # no temp file left behind
    assert receipt.batch_id == "B-1"
    assert receipt.partner_reference == "nord:B-1.p7m"
    assert receipt.delivered_at.tzinfo is dt.timezone.utc
    assert receipt.detail == f"sha256={hashlib.sha256(PAYLOAD).hexdigest()}"


def test_redelivery_of_same_bytes_returns_same_receipt_without_rewriting(tmp_path: Path) -> None:
    a = adapter(tmp_path)
    first = a.deliver(batch())
    before = os.stat(tmp_path / "B-1.p7m")
    second = a.deliver(batch())
    after = os.stat(tmp_path / "B-1.p7m")
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_redelivery_of_a_reencrypted_batch_keeps_the_first_file(tmp_path: Path) -> None:
    # A retry re-encrypts (CMS is randomised): same batch id, other bytes. It is the same delivery.
    a = adapter(tmp_path)
    first = a.deliver(batch())
    again = a.deliver(batch(payload=b"the same batch, encrypted again"))
    assert again == first
    assert (tmp_path / "B-1.p7m").read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B-1.p7m"]


def test_target_that_is_not_a_directory_is_retryable(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(DeliveryError) as info:
        adapter(not_a_dir).deliver(batch())
    assert info.value.retryable is True
    assert str(not_a_dir) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_retryable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(DeliveryError) as info:
            adapter(locked).deliver(batch())
        assert info.value.retryable is True and str(locked) in str(info.value)
    finally:
        locked.chmod(0o700)


def test_failed_publish_leaves_neither_final_nor_temp_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", disk_full)
    with pytest.raises(DeliveryError, match="No space left") as info:
        adapter(tmp_path).deliver(batch())
    assert info.value.retryable is True
    assert list(tmp_path.iterdir()) == []


def test_a_late_writer_never_replaces_the_published_file(tmp_path: Path) -> None:
    """Two workers writing the same batch (a node that stood still past its lease wakes while the worker that
    took the row over writes it): the file published first stays as it is, byte for byte, and the late writer
    confirms it instead of replacing it; each writer's temp file is its own, none is left behind."""
    first, late = adapter(tmp_path), adapter(tmp_path)
    final = tmp_path / "B-1.p7m"
    assert first._write_atomically(final, b"first writer's batch")
    assert not late._write_atomically(final, b"the late writer's batch, re-encrypted")
    assert final.read_bytes() == b"first writer's batch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B-1.p7m"]


def test_temp_files_a_killed_writer_left_are_removed_once_stale(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".B-1.p7m.0a0a0a0a0a0a.tmp", tmp_path / ".B-1.p7m.0b0b0b0b0b0b.tmp"
    theirs = tmp_path / ".agency-sync.tmp"  # not a name the adapter writes: the partner's own, left alone
    stale.write_bytes(b"cut short")
    fresh.write_bytes(b"another writer at work")
    theirs.write_bytes(b"the partner's")
    old = dt.datetime.now().timestamp() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(theirs, (old, old))
    adapter(tmp_path).deliver(batch())
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, theirs.name, "B-1.p7m"]


@pytest.mark.parametrize("name", ["../escape.p7m", "sub/B.p7m", ".hidden", ""])
def test_unsafe_filenames_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(DeliveryError, match="unsafe filename") as info:
        adapter(tmp_path / "out").deliver(batch(filename=name))
    assert info.value.retryable is False
    assert not (tmp_path / "escape.p7m").exists()


def test_path_option_is_required() -> None:
    with pytest.raises(ConfigError, match="'path'") as info:
        DirectoryAdapter("nord", {})
    assert info.value.key == "partners.nord.options.path"


def test_registry_loads_adapter_and_names_known_aliases(tmp_path: Path) -> None:
    loaded = load_adapter("directory", "nord", {"path": str(tmp_path)})
    assert isinstance(loaded, DirectoryAdapter) and isinstance(loaded, PartnerAdapter)
    assert loaded.name == "directory" and loaded.retryable == (OSError,)
    loaded.close()
    with pytest.raises(ConfigError, match="known adapters: directory"):
        load_adapter("carrier-pigeon", "nord", {})


@pytest.mark.parametrize("value", ["false", "no", 0, None])
def test_create_is_a_true_or_false_switch(tmp_path: Path, value: object) -> None:
    """``create: "false"`` (quoted in YAML) was read by bool() as true: the gateway made the folder it was told
    must exist (an unmounted share's mount point) and reported batches delivered where the partner never looks."""
    with pytest.raises(ConfigError, match="'create' must be true or false"):
        DirectoryAdapter("nord", {"path": str(tmp_path / "share"), "create": value})
    assert not (tmp_path / "share").exists()
