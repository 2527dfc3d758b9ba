"""``gateway clients add-login|login-password|remove-login``: web console logins from the command line, through
the same use cases as the console's operator pages (only the scrypt hash written)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from gateway.crypto.passwords import verify_password
from gateway.entrypoints.cli import main
from tests.conftest import write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")


def _users(config: Path) -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load(config.read_text(encoding="utf-8")).get("web", {}).get("users", {}))


def test_add_set_and_remove_a_console_login(config: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("first password 1\n"))
    assert main(["--config", str(config), "clients", "add-login", "demo", "kasse", "--role", "submit",
                 "--password-stdin"]) == 0
    entry = _users(config)["kasse"]
    assert entry["client"] == "demo" and entry["role"] == "submit"
    assert verify_password("first password 1", entry["password_hash"])
    monkeypatch.setattr("sys.stdin", io.StringIO("second password 2\n"))
    assert main(["--config", str(config), "clients", "login-password", "demo", "kasse", "--password-stdin"]) == 0
    assert verify_password("second password 2", _users(config)["kasse"]["password_hash"])
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert main(["--config", str(config), "clients", "login-password", "other", "kasse", "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--config", str(config), "clients", "add-login", "demo", "kurz", "--password-stdin"]) == 2
    assert main(["--config", str(config), "clients", "remove-login", "demo", "kasse"]) == 0
    assert "kasse" not in _users(config) and "kurz" not in _users(config)
    out = capsys.readouterr()
    for secret in ("first password 1", "second password 2"):
        assert secret not in out.out + out.err and secret not in config.read_text(encoding="utf-8")
