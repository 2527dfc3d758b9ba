"""Hot reload: the registry follows edits of mappings/, a broken edit keeps the last good mapping running."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.entrypoints.mapping_watch import MappingWatcher
from gateway.errors import ConfigError
from gateway.services.mappings import MappingRegistry
from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[2]


def _wait_for(predicate, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.02)  # polling interval, not a wait for a fixed time


@pytest.fixture
def registry(tmp_path: Path) -> MappingRegistry:
    return MappingRegistry(load_config(write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")))


def test_get_reloads_an_edited_mapping_and_keeps_the_last_good_one(
        registry: MappingRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mappings" / "demo.yaml"
    first = registry.get("demo")
    assert registry.get("demo") is first  # unchanged file: cached
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("memo: Bemerkung", "reason: Bemerkung"), encoding="utf-8")
    second = registry.get("demo")
    assert "reason" in second.fields and "memo" not in second.fields
    with caplog.at_level(logging.ERROR, logger="gateway.services.mappings"):
        path.write_text(good.replace("memo: Bemerkung", "memo: {column: Bemerkung, case: loud}"), encoding="utf-8")
        assert registry.get("demo") is second  # broken edit: the last good version keeps running
        assert registry.get("demo") is second
    errors = [r.getMessage() for r in caplog.records if "reload_failed" in r.getMessage()]
    assert len(errors) == 1 and "fields.memo.case" in errors[0]  # said once per edit, with the key
    state = registry.state(path)
    assert state.spec is second and state.error is not None and "loud" in state.error
    path.write_text(good, encoding="utf-8")
    assert "memo" in registry.get("demo").fields and registry.state(path).error is None


def test_a_mapping_that_never_loaded_raises(registry: MappingRegistry, tmp_path: Path) -> None:
    (tmp_path / "mappings" / "demo.yaml").write_text("client: demo\nfields: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="fields"):
        registry.get("demo")


def test_watcher_reloads_on_change_without_a_get(registry: MappingRegistry, tmp_path: Path) -> None:
    folder = tmp_path / "mappings"
    path = folder / "demo.yaml"
    watcher = MappingWatcher(registry, folder)
    watcher.start()
    try:
        assert registry.state(path).generation == 1  # loaded at start
        good = path.read_text(encoding="utf-8")
        path.write_text(good.replace("memo: Bemerkung", "reason: Bemerkung"), encoding="utf-8")
        _wait_for(lambda: registry.state(path).generation == 2)
        assert "reason" in (registry.state(path).spec or registry.get("demo")).fields
        # an editor's save: write a temp file, rename it over the mapping; this one is broken
        tmp = folder / ".demo.yaml.swp"
        tmp.write_text(good.replace("version: 1", "version: 7"), encoding="utf-8")
        tmp.replace(path)
        _wait_for(lambda: registry.state(path).error is not None)
        state = registry.state(path)
        assert state.generation == 2 and state.spec is not None and "reason" in state.spec.fields
        assert "version" in (state.error or "")
    finally:
        watcher.stop()


def test_ingest_uses_the_last_good_mapping_after_a_broken_edit(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from gateway.services.ingest import ingest_file

    path = app.config.mapping_file("demo")
    first = ingest_file(app, REPO / "examples" / "demo.csv", "demo", dry_run=True)
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("principal_amount: Betrag", "principal_amount: {column: Betrag, split: cents}"),
                    encoding="utf-8")
    again = ingest_file(app, REPO / "examples" / "demo.csv", "demo", dry_run=True)
    assert (again.status, again.accepted, again.rejected) == (first.status, first.accepted, first.rejected)
    assert "fields.principal_amount.split" in (app.mappings.state(path).error or "")
    path.write_text(good.replace("memo: Bemerkung", "reason: Bemerkung"), encoding="utf-8")
    ingest_file(app, REPO / "examples" / "demo.csv", "demo", dry_run=True)
    state = app.mappings.state(path)
    assert state.error is None and state.spec is not None and "reason" in state.spec.fields


IN_PLACE = ("import os, sys\n"
            "data = open(sys.argv[1], 'rb').read()\n"
            "cut = data.index(sys.argv[3].encode())\n"
            "fd = os.open(sys.argv[2], os.O_WRONLY | os.O_TRUNC)\n"
            "os.write(fd, data[:cut])\n"
            "print('half', flush=True)\n"
            "sys.stdin.readline()\n"
            "os.write(fd, data[cut:])\n"
            "os.close(fd)\n")


def test_a_mapping_written_in_place_is_read_once_its_writer_closes_it(registry: MappingRegistry,
                                                                      tmp_path: Path) -> None:
    # A copy in place (scp, a share, an editor saving in pieces) is, halfway, a valid mapping without its last
    # lines: a file ingested then was mapped without the debtor's IBAN (and without a `policy` that holds every
    # run, had it come last), and its claims went to the partner so.
    path = tmp_path / "mappings" / "demo.yaml"
    first = registry.get("demo")
    assert "debtor.iban" in first.fields
    new = tmp_path / "new.yaml"
    new.write_text(path.read_text(encoding="utf-8").replace("memo: Bemerkung", "reason: Bemerkung"), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-c", IN_PLACE, str(new), str(path), "  debtor.iban:"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "half"
        assert registry.get("demo") is first  # the half written is a valid mapping, but not the one being written
        assert registry.state(path).error is None
    finally:
        proc.communicate("go\n", timeout=30)
    assert proc.returncode == 0
    second = registry.get("demo")
    assert "reason" in second.fields and "debtor.iban" in second.fields
