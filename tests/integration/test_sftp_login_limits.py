"""SFTP logins: a wrong password and an unknown name cost the same scrypt work (the answer's time tells no
name apart), failures are counted once each, per address and per login name, and the documented limit
(`sftp.max_auth_failures`, 5) is the real one. Timing is checked only as a lower bound (both answers take at
least the scrypt work), never as a tight window."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

import gateway.entrypoints.sftp.auth as sftp_auth
from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.crypto.passwords import hash_password, verify_password
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.sftp_support import ServerThread, make_key, sftp_clients_config

PASSWORD = "a long passphrase 42"


def test_wrong_passwords_and_unknown_names_take_the_same_work_and_count_per_name(tmp_path: Path,
                                                                                 db_url: str,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {cid: make_key(tmp_path / "client-keys", cid) for cid in ("demo", "acme")}
    stored = hash_password(PASSWORD)
    cfg = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0},  # max_auth_failures: default 5
                       clients=sftp_clients_config(keys, acme={"password_hash": stored}),
                       routing=[{"partner": "demo-agency"}])
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    # The scrypt work of one check, measured here: the least of three, halved, since other tests may share
    # the cores; the counted checks below say the same without a clock.
    spans = []
    for _ in range(3):
        started = time.perf_counter()
        verify_password("not it", stored)
        spans.append(time.perf_counter() - started)
    floor = 0.5 * min(spans)
    checks: list[str] = []

    def counted(password: str, hashed: str) -> bool:
        checks.append(password)
        return verify_password(password, hashed)
    monkeypatch.setattr(sftp_auth, "verify_password", counted)
    try:
        with ServerThread(app) as srv:
            async def login(user: str, *, password: str | None = None, key: Path | None = None,
                            source: str = "127.0.0.1") -> tuple[bool, float]:
                kw: dict[str, Any] = {"password": password, "preferred_auth": "password"} if password else {}
                t0 = time.perf_counter()
                try:
                    async with srv.connect(key, user, local_addr=(source, 0), **kw) as conn, \
                            conn.start_sftp_client() as sftp:
                        await sftp.listdir("/")
                        return True, time.perf_counter() - t0
                except asyncssh.PermissionDenied:
                    return False, time.perf_counter() - t0

            def run(**kw: Any) -> tuple[bool, float]:
                return asyncio.run(login(**kw))

            for _ in range(4):
                ok, took = run(user="acme", password="wrong guess")
                assert not ok and took >= floor
            assert checks == ["wrong guess"] * 4
            ok, took = run(user="nobody", password="wrong guess", source="127.0.0.2")
            assert not ok and took >= floor  # an unknown name costs the same work as a known one
            assert checks == ["wrong guess"] * 5  # one scrypt check (against a decoy), as for a known name
            assert run(user="acme", password=PASSWORD)[0]  # four failures: still under the limit of five
            assert not run(user="acme", password="wrong guess")[0]  # the fifth
            assert not run(user="acme", password=PASSWORD)[0]  # blocked from this address
            assert not run(user="acme", password=PASSWORD, source="127.0.0.3")[0]  # and for this name anywhere
            assert run(user="acme", key=keys["acme"].private, source="127.0.0.3")[0]  # its keys still work
            assert run(user="demo", key=keys["demo"].private, source="127.0.0.3")[0]
            assert not run(user="demo", key=keys["demo"].private)[0]  # the address stays blocked for all
    finally:
        app.close()
