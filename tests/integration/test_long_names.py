"""A file dropped straight into the watched inbox may be named up to the file system's limit; the names the
gateway derives from it (its ack, its set-aside copy, their temp names) are made to fit, still one per file."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.bootstrap import App
from gateway.services.ack import NAME_MAX, fit_name
from gateway.services.inbox import process_inbox_file
from gateway.services.set_aside import set_aside
from tests.conftest import ROOT


def test_fit_name_keeps_short_names_and_shortens_long_ones_uniquely() -> None:
    assert fit_name("rechnungen-2025-11.csv", 100) == "rechnungen-2025-11.csv"
    a, b = "Ä" * 120 + "-a.csv", "Ä" * 120 + "-b.csv"
    fa, fb = fit_name(a, 100), fit_name(b, 100)
    assert fa != fb and fa.endswith(".csv") and fb.endswith(".csv")
    assert len(fa.encode()) <= 100 and len(fb.encode()) <= 100
    assert fa.startswith("Ä" * 10)  # cut on a character, not inside one
    assert fit_name(a, 100) == fa  # the same name always gets the same shorter one


def test_a_file_with_a_name_at_the_limit_is_acked_and_set_aside(app: App) -> None:
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    name = "forderungen-" + "x" * (NAME_MAX - len("forderungen-") - len(".csv")) + ".csv"
    assert len(name.encode()) == NAME_MAX
    path = upload / name
    shutil.copy(ROOT / "examples" / "demo.csv", path)
    result = process_inbox_file(app, "demo", path, channel="watch")
    assert result.status in ("completed", "completed_with_errors"), result.error
    [ack] = (app.config.inbox_dir / "demo" / "ack").iterdir()
    assert ack.name.startswith("forderungen-xxx") and ack.name.endswith(".csv.ack.csv")
    assert str(ack) == result.ack_path
    assert len(ack.read_text(encoding="utf-8").splitlines()) > 1

    other = upload / name.replace("forderungen-", "zahlungen--")
    other.write_bytes(b"\x00" * 10)
    target = set_aside(app, "demo", other, "test", attempts=3)
    assert target is not None and target.exists() and len(target.name.encode()) <= NAME_MAX
    assert not other.exists()
    assert len(list((app.config.inbox_dir / "demo" / "ack").iterdir())) == 2  # its own ack beside the first


def test_serve_acks_a_dropped_file_named_at_the_limit(tmp_path: Path) -> None:
    """Through the watcher of a real `gateway serve`: it looks for the file's `.done` marker (a name one over the
    limit) and must neither fail on it nor leave the file unanswered."""
    from tests.conftest import write_config
    from tests.e2e.test_serve_stop import Serve
    from tests.e2e.test_serve_demo import gateway
    from tests.support import wait_for

    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", dispatcher={"enabled": False})
    assert gateway(cfg, "keys", "init").returncode == 0 and gateway(cfg, "db", "upgrade").returncode == 0
    served = Serve(tmp_path, cfg)
    try:
        served.start()
        name = "z" * (NAME_MAX - len(".csv")) + ".csv"
        staged = tmp_path / "staged.csv"
        shutil.copy(ROOT / "examples" / "demo.csv", staged)
        staged.rename(tmp_path / "inbox" / "demo" / "upload" / name)
        acks = tmp_path / "inbox" / "demo" / "ack"
        wait_for("the ack of the long-named file", lambda: any(acks.glob("zzz*.csv.ack.csv")), 60)
        assert "supervisor.task_failed" not in served.log.read_text()
    finally:
        served.close()
