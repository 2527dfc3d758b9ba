"""Keys rotated while `gateway serve` delivers: no delivery fails, old and new claims stay readable,
and an erased claim shows no personal data through the CLI of the same running gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.support import wait_for


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Path]:
    cfg = write_config(tmp_path, db_url)
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "serve"], stdout=log, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    try:
        wait_for("serve to be ready", lambda: "serve.ready" in (tmp_path / "serve.log").read_text()
                 or proc.poll() is not None)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield cfg
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def drop(tmp_path: Path, name: str, prefix: str) -> None:
    """The demo file with its invoice numbers renamed, so each drop brings new claims."""
    text = (ROOT / "examples" / "demo.csv").read_bytes().replace(b"RE-2025-", prefix.encode())
    upload = tmp_path / "inbox" / "demo" / "upload"
    (upload / f"{name}.part").write_bytes(text)
    os.rename(upload / f"{name}.part", upload / name)


def states(cfg: Path) -> dict[int, str]:
    out = gateway(cfg, "claims", "list", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    return {c["id"]: c["state"] for c in json.loads(out.stdout)}


def settled(cfg: Path, tmp_path: Path, acks: int) -> dict[int, str] | None:
    """Every claim once the ``acks`` files are acknowledged and nothing waits for delivery."""
    if len(list((tmp_path / "inbox" / "demo" / "ack").glob("*.ack.csv"))) < acks:
        return None
    now = states(cfg)
    return now if now and not [s for s in now.values() if s in ("queued", "delivering")] else None


def test_rotation_while_serving(served: Path, tmp_path: Path) -> None:
    cfg = served
    drop(tmp_path, "a.csv", "A-")
    first = wait_for("the first file's claims to settle", lambda: settled(cfg, tmp_path, 1), timeout=60)
    # Rotate the master key and the client's key while serve keeps the old file loaded, then bring more claims.
    rot = gateway(cfg, "keys", "rotate", "--master")
    assert rot.returncode == 0 and "new master key k2" in rot.stdout, rot.stderr
    drop(tmp_path, "b.csv", "B-")
    rot = gateway(cfg, "keys", "rotate", "--client", "demo")
    assert rot.returncode == 0 and "new key c2" in rot.stdout, rot.stderr
    drop(tmp_path, "c.csv", "C-")
    after = wait_for("every claim to settle", lambda: settled(cfg, tmp_path, 3), timeout=90)
    assert len(after) == 3 * len(first) and "failed" not in after.values()
    assert list(after.values()).count("handed_over") == 3 * list(first.values()).count("handed_over") > 0
    assert gateway(cfg, "keys", "retire", "k1").returncode == 0
    log = (tmp_path / "serve.log").read_text()
    assert "unknown key" not in log and "KeyStoreError" not in log
    for cid in (min(after), max(after)):  # the oldest and the newest claim, read after both rotations
        shown = gateway(cfg, "claims", "show", str(cid), "--json")
        assert shown.returncode == 0 and "[erased]" not in shown.stdout, shown.stderr
    # Erasure reaches a running gateway at once: the same claim, read again, has no personal data left.
    victim = min(after)
    before = gateway(cfg, "claims", "show", str(victim), "--json").stdout
    name = json.loads(before)["claim"]["debtor"]["last_name"]
    erased = gateway(cfg, "claims", "erase", str(victim), "--reason", "Art. 17 request")
    assert erased.returncode == 0 and f"erased 1 claim(s): {victim}" in erased.stdout, erased.stderr
    again = gateway(cfg, "claims", "show", str(victim), "--json").stdout
    assert "[erased]" in again and name not in again
    hist = gateway(cfg, "claims", "history", str(victim), "--json").stdout
    assert '"erased"' in hist and name not in hist
