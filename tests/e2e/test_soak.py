"""A short soak (`bench/soak.py`): `gateway serve` killed with SIGKILL every few seconds while work arrives; after
it, every file is acked once, every claim stored once and with the partner exactly once, nothing dead, nothing
left behind. SQLite takes files from the watched inbox for a directory partner; PostgreSQL takes SFTP uploads
(OpenSSH and slow asyncssh puts, some broken off by a kill) for an HTTP partner that fails now and then."""

from __future__ import annotations

from bench.soak import soak


def test_serve_killed_again_and_again_loses_and_duplicates_nothing(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        report = soak(25, None, seed=11, keep=False, partner_kind="directory", intake="inbox")
    else:
        report = soak(25, db_url, seed=12, keep=False, partner_kind="http", intake="sftp")
    assert report["problems"] == [], report
    assert report["kills"] >= 1 and report["files"] >= 5, report  # faults did happen, and work arrived
