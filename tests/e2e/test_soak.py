"""A short soak (`bench/soak.py`): `gateway serve` killed with SIGKILL every few seconds while work arrives; after
it, every file is acked once, every claim stored once and with the partner exactly once, nothing dead, nothing
left behind. SQLite takes files from the watched inbox for a directory partner; PostgreSQL takes SFTP uploads
(OpenSSH and slow asyncssh puts, some broken off by a kill) for an HTTP partner that fails now and then, and,
with three nodes sharing the database and the inbox, files while nodes are killed (some kept down for longer
than their leases, so that the others take their work over) and all their database connections cut every
few seconds; and, with two nodes, some faults are freezes (SIGSTOP past the leases, then SIGCONT) instead of
kills."""

from __future__ import annotations

import pytest

from bench.soak import soak


def test_serve_killed_again_and_again_loses_and_duplicates_nothing(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        report = soak(25, None, seed=11, keep=False, partner_kind="directory", intake="inbox")
    else:
        report = soak(25, db_url, seed=12, keep=False, partner_kind="http", intake="sftp")
    assert report["problems"] == [], report
    assert report["kills"] >= 1 and report["files"] >= 5, report  # faults did happen, and work arrived


def test_three_nodes_killed_in_turn_lose_and_duplicate_nothing(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("several nodes share PostgreSQL")
    report = soak(30, db_url, seed=7, keep=False, partner_kind="directory", intake="inbox", nodes=3, cut_db=True)
    assert report["problems"] == [], report
    assert report["kills"] + report["sigterms"] >= 2 and report["db_cuts"] >= 3 and report["files"] >= 5, report


def test_two_nodes_frozen_past_their_leases_lose_and_duplicate_nothing(db_url: str) -> None:
    """Faults that freeze a node (SIGSTOP) for longer than its leases and let it go on (SIGCONT), beside kills:
    the other node takes its work over, and the woken node records, sends and acks nothing a second time."""
    if db_url.startswith("sqlite"):
        pytest.skip("another node takes over on a shared PostgreSQL only")
    report = soak(25, db_url, seed=5, keep=False, partner_kind="http", intake="inbox", nodes=2, pause=True)
    assert report["problems"] == [], report
    assert report["pauses"] >= 1 and report["files"] >= 5, report
