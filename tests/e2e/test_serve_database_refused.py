"""`gateway serve` against a PostgreSQL that refuses its login (a role or database that does not exist; a wrong
password is the same class of answer): waiting will not mend it, so it exits 1 at once with one line naming the
server's reason and never the password, while a database that is merely not reachable is still waited for.

The server is the real PostgreSQL of the test run (trust authentication here, so a wrong password itself cannot be
provoked; a missing role or database is refused the same way). A password is planted in every URL and looked for in
every line the process writes."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, write_config
from tests.e2e.test_serve_demo import GATEWAY, gateway
from tests.support import serve_process, wait_for

PLANTED = "Pw-Quellenfeld-7731"

pytestmark = pytest.mark.skipif(not PG_URL, reason="GATEWAY_TEST_PG_URL not set: a PostgreSQL that refuses a login")


def _config(tmp_path: Path, **url_parts: object) -> Path:
    assert PG_URL
    url = make_url(PG_URL).set(password=PLANTED, **url_parts)  # type: ignore[arg-type]
    cfg = write_config(tmp_path, url.render_as_string(hide_password=False))
    assert gateway(cfg, "keys", "init").returncode == 0
    return cfg


@pytest.mark.parametrize("url_parts, reason", [
    ({"username": "gw_no_such_role"}, 'role "gw_no_such_role" does not exist'),
    ({"database": "gw_no_such_database"}, 'database "gw_no_such_database" does not exist'),
])
def test_a_refused_login_ends_serve_at_start_with_one_line_and_no_password(
        tmp_path: Path, url_parts: dict[str, object], reason: str) -> None:
    cfg = _config(tmp_path, **url_parts)
    out = subprocess.run([*GATEWAY, "--config", str(cfg), "serve"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    refused = [line for line in text.splitlines() if "the database refused the gateway" in line]
    assert len(refused) == 1 and reason in refused[0], text
    assert "serve.database_unavailable" not in text and "Traceback" not in text  # not waited for, not a crash
    assert PLANTED not in text


def test_a_database_that_is_not_reachable_is_still_waited_for_without_the_password(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on: connections refused, as while a server restarts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = _config(tmp_path, port=port)
    with serve_process(cfg) as (proc, log):
        wait_for("serve to wait for the database", lambda: log.read_text().count("serve.database_unavailable") >= 2)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert PLANTED not in log.read_text()
