"""Three `gateway ingest` processes of one file at once (as three nodes' cron jobs would): one submission,
one ack, every claim once; the other two wait for the client's ingest lease and answer "already ingested"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.sftp_support import client_csv


def test_three_ingests_of_one_file_at_once(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, db_url)
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    big = client_csv(tmp_path / "once.csv", 2000, "ONCE")
    procs = [subprocess.Popen([*GATEWAY, "--config", str(cfg), "ingest", str(big), "--client", "demo", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["completed", "duplicate", "duplicate"], statuses
    subs = json.loads(gateway(cfg, "submissions", "list", "--json").stdout)
    assert len(subs) == 1 and subs[0]["accepted"] == 2000
    claims = json.loads(gateway(cfg, "claims", "list", "--json", "--limit", "100000").stdout)
    assert len(claims) == 2000
    ack = tmp_path / "inbox" / "demo" / "ack" / "once.csv.ack.csv"
    assert len(ack.read_text(encoding="utf-8").splitlines()) == 2001
    assert not [p for p in ack.parent.iterdir() if p.name.startswith(".")]  # no stray temp file
