"""One client's uploads flooding the console while its ingest lease is taken: the other users' pages still answer.

Every page reads the database in a worker thread, and uvicorn's loop has 40 of them for everything. An upload
waited for its client's ingest lease (one ingest per client, on every node) inside its worker thread for up to
30 s: a client login sending 45 uploads while a file of its client was being ingested elsewhere held every
thread, and the operator's page (any user's) answered only when the uploads gave up, 27 s later. Uploads now
wait for their turn on the event loop: one per client and four in all hold a thread. (A login's requests beyond
its share, ``login_share.py``, are answered 429 at once.)
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services.node import client_ingest_lease, leased
from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import listening_port, serve_process, wait_ready

UPLOADS = 45


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    clients = {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"}}
    partners = {"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                "options": {"path": "var/partners/demo-agency"}}}
    web = {"enabled": True, "port": 0, "users": {
        "demo": {"client": "demo", "role": "submit", "password_file": "var/keys/web-demo.password"},
        "operator": {"operator": True, "password_file": "var/keys/web-operator.password"}}}
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", clients=clients,
                       partners=partners, routing=[], web=web, health={"listen": None})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    with serve_process(cfg) as (proc, out):
        wait_ready(proc, out)
        port = listening_port(out, "web")
        assert port, out.read_text()
        yield f"https://127.0.0.1:{port}", cfg
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, out.read_text()


def _login(url: str, keys: Path, login: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, verify=False, timeout=120)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert token
    password = (keys / f"web-{login}.password").read_text().strip()
    assert c.post("/login", data={"csrf": token.group(1), "login": login, "password": password}).status_code == 303
    page = c.get("/upload" if login == "demo" else "/operator/runs")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return c, token.group(1)


def test_a_clients_uploads_waiting_for_its_lease_leave_the_other_users_pages_answering(
        served: tuple[str, Path]) -> None:
    url, cfg = served
    keys = cfg.parent / "var" / "keys"
    demo, token = _login(url, keys, "demo")
    operator, _ = _login(url, keys, "operator")
    app = build_app(load_config(cfg))  # another node of the same database, ingesting a file of demo's
    answered: list[tuple[str, float, int]] = []

    def upload(i: int) -> None:
        r = demo.post("/upload", data={"csrf": token},
                      files={"file": (f"f{i}.csv", b"Rechnungsnr;Betrag\nX-1;2\n", "text/csv")})
        answered.append(("upload", time.monotonic(), r.status_code))

    try:
        with leased(app, client_ingest_lease("demo")) as lease:
            assert lease is not None
            threads = [threading.Thread(target=upload, args=(i,)) for i in range(UPLOADS)]
            for t in threads:
                t.start()
            time.sleep(2)  # let them arrive (not an assertion: the order below is)
            page = operator.get("/operator/runs")
            answered.append(("operator", time.monotonic(), page.status_code))
        for t in threads:  # the lease is free now: they are taken in turn or told to try again
            t.join(timeout=120)
    finally:
        app.close()
        demo.close()
        operator.close()
    assert page.status_code == 200
    assert len(answered) == UPLOADS + 1 and {s for k, _, s in answered if k == "upload"} <= {200, 303, 429}
    # one login's requests beyond its share (login_share.py: 4 running, 16 waiting) are answered 429 at once;
    # every upload that was taken answered after the operator's page
    kinds = [k for k, _, s in sorted(answered, key=lambda x: x[1]) if s != 429]
    assert kinds[0] == "operator", kinds[:5]
