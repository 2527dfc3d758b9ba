"""Labels under concurrent writers: two definitions of the same new label at once both succeed; a rename or delete
of a label keeps a label another user attached to the same claim meanwhile (PostgreSQL: SQLite serialises the
writers); a rename or delete works in batches of claims, each batch whole, and an interrupted rename is finished
by renaming again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from sqlalchemy import text

from gateway.bootstrap import App
from gateway.services import claim_ops, labels, submit
from gateway.store import labels as label_store
from gateway.store.db import read_tx
from tests.factories import make_claim
from tests.support import wait_for


def _claims(app: App, *refs: str) -> list[int]:
    drafts = [submit.Draft(reference=r, claim=msgspec.structs.replace(make_claim(r), client_id="demo")) for r in refs]
    return [r.claim_id for r in submit.submit_claims(app, "demo", drafts).results]


def _labels(app: App, cid: int) -> list[str]:
    with read_tx(app.engine) as conn:
        return sorted(label_store.for_claims(conn, [cid]).get(cid, []))


def _defined(app: App) -> set[str]:
    return {label.name for label in labels.catalogue(app, "demo") if label.defined}


def test_concurrent_definitions_of_one_new_label_both_succeed(app: App) -> None:
    errors: list[str] = []
    results: list[bool] = []
    for i in range(20):
        gate = threading.Barrier(2)

        def go(colour: str, name: str = f"L{i}") -> None:
            gate.wait()
            try:
                results.append(labels.define(app, "demo", name, colour))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(type(exc).__name__)
        ts = [threading.Thread(target=go, args=(c,)) for c in ("red", "blue")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    assert not errors, errors
    assert results.count(True) == 20 and results.count(False) == 20  # one of each pair made it, one recoloured
    assert _defined(app) >= {f"L{i}" for i in range(20)}


def _waiting_for_a_lock(app: App) -> bool:
    with app.engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND datname = current_database()")).scalar())


def _race(app: App, monkeypatch: pytest.MonkeyPatch, op: Callable[[], Any]) -> int:
    """``op`` (a rename or delete of 'old') runs while another writer's edit_labels(add 'urgent') is inside its
    transaction (paused after its write, before its commit); returns the claim."""
    (cid,) = _claims(app, "R-LBL")
    labels.define(app, "demo", "old", "red")
    labels.define(app, "demo", "urgent", "blue")
    claim_ops.edit_labels(app, "demo", cid, add=["old"])
    go, inside = threading.Event(), threading.Event()
    original = claim_ops._forward

    def paused(*args: Any, **kwargs: Any) -> bool:  # the editor's pause: a writer holding its claim's lock
        if threading.current_thread().name == "editor":
            inside.set()
            go.wait(30)
        return original(*args, **kwargs)
    monkeypatch.setattr(claim_ops, "_forward", paused)
    editor = threading.Thread(target=claim_ops.edit_labels, args=(app, "demo", cid), kwargs={"add": ["urgent"]},
                              name="editor")
    editor.start()
    assert inside.wait(30)
    other = threading.Thread(target=op)
    other.start()
    wait_for("the rename/delete to wait for the claim's lock", lambda: _waiting_for_a_lock(app))
    go.set()
    editor.join(30)
    other.join(30)
    assert not editor.is_alive() and not other.is_alive()
    return cid


def test_rename_keeps_a_label_attached_meanwhile(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises the two writers (one write transaction at a time)")
    cid = _race(app, monkeypatch, lambda: claim_ops.rename_label(app, "demo", "old", "new"))
    assert _labels(app, cid) == ["new", "urgent"]


def test_delete_keeps_a_label_attached_meanwhile(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises the two writers (one write transaction at a time)")
    cid = _race(app, monkeypatch, lambda: claim_ops.delete_label(app, "demo", "old"))
    assert _labels(app, cid) == ["urgent"]


def test_rename_and_delete_work_in_batches_and_an_interrupted_rename_is_finished(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _claims(app, *(f"R-B{i}" for i in range(5)))
    labels.define(app, "demo", "old", "red")
    for cid in ids:
        claim_ops.edit_labels(app, "demo", cid, add=["old", "keep"])
    monkeypatch.setattr(claim_ops, "LABEL_BATCH", 2)
    original, calls = claim_ops._relabel, [0]

    def failing_in_the_second_batch(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 3:  # the first claim of the second batch: the process "stops" here
            raise RuntimeError("stopped")
        return original(*args, **kwargs)
    monkeypatch.setattr(claim_ops, "_relabel", failing_in_the_second_batch)
    with pytest.raises(RuntimeError):
        claim_ops.rename_label(app, "demo", "old", "new")
    after = [_labels(app, cid) for cid in ids]
    assert after[:2] == [["keep", "new"]] * 2  # the first batch is whole and kept
    assert after[2:] == [["keep", "old"]] * 3  # the second rolled back whole
    assert "new" in _defined(app) and "old" not in _defined(app)
    monkeypatch.setattr(claim_ops, "_relabel", original)
    assert claim_ops.rename_label(app, "demo", "old", "new") == 3  # renaming again finishes the move
    assert [_labels(app, cid) for cid in ids] == [["keep", "new"]] * 5
    with pytest.raises(claim_ops.InvalidRequest):
        claim_ops.rename_label(app, "demo", "old", "new")  # nothing left of 'old'
    assert claim_ops.delete_label(app, "demo", "new") == 5  # three batches
    assert [_labels(app, cid) for cid in ids] == [["keep"]] * 5
