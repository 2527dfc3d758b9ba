"""The SFTP hand-over has the partner's server flush the upload and its marker to disk before it puts them in place.

OpenSSH's sftp-server does not flush a file when the client closes it; a file renamed to a new name before its data
reached the disk can come back empty after the server's crash. The gateway reported such a batch handed over all
the same. Against the real SFTP partner simulator (asyncssh), which offers ``fsync@openssh.com`` as OpenSSH does
and notes every name put in place whose data the client never had flushed.
"""

from __future__ import annotations

from pathlib import Path

from gateway.domain.lifecycle import State
from tests.contract.harness import deliver_demo_once, SftpHarness, claims_by_state, gateway_for, keys_template  # noqa: F401


def test_a_batch_is_flushed_on_the_partners_server_before_it_is_handed_over(tmp_path: Path, db_url: str,
                                                                           keys_template: Path) -> None:  # noqa: F811
    harness = SftpHarness(tmp_path)
    try:
        with gateway_for(harness, tmp_path, db_url, keys_template) as app:
            deliver_demo_once(app)
            assert State.HANDED_OVER in claims_by_state(app)
    finally:
        harness.stop()
    assert sum(harness.sim.arrivals.values()) == 1
    assert harness.sim.unflushed == []  # neither the batch nor its marker was put in place unflushed
    assert len(harness.sim.flushed) == 2
