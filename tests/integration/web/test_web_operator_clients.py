"""The operator's clients and credentials pages: add a client, add console logins, set or reset passwords, add
SSH keys; written to the config file through the admin use cases and taken at once; passwords shown once."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from gateway.config import load_config
from gateway.crypto.passwords import verify_password
from gateway.entrypoints.web.app import build_web_app
from tests.integration.web.conftest import Console


def _shown_password(page: str) -> str:
    found = re.search(r'<p class="secret" id="new-password">([^<]+)</p>', page)
    assert found, page
    return found.group(1)


def _file(console: Console) -> Any:
    return yaml.safe_load(Path(console.app.config.source).read_text(encoding="utf-8"))


def test_operator_adds_a_client_written_to_the_config_and_taken_at_once(console: Console,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.web")
    c = console.client("olga")
    assert "demo-agency" in c.get("/operator/clients").text
    token = console.csrf(c, "/operator/clients")
    r = c.post("/operator/clients", data={"csrf": token, "client_id": "fitness-nord", "name": "Fitness Nord GmbH",
                                          "default_partner": "demo-agency", "mapping": "demo", "hold_all": "on"})
    assert r.headers["location"] == "/operator/clients/fitness-nord"
    page = c.get(r.headers["location"]).text
    assert "Mandant fitness-nord angelegt" in page and "Fitness Nord GmbH" in page
    entry = _file(console)["clients"]["fitness-nord"]
    assert entry == {"name": "Fitness Nord GmbH", "mapping": "demo", "default_partner": "demo-agency", "hold_all": True}
    assert console.app.config.clients["fitness-nord"].hold_all  # the running gateway has it
    assert "web.admin login=olga client=fitness-nord change=client_added" in caplog.text
    again = c.post("/operator/clients", data={"csrf": token, "client_id": "fitness-nord", "name": "x"})
    assert "exists already" in c.get(again.headers["location"]).text
    bad = c.post("/operator/clients", data={"csrf": token, "client_id": "Bad Id", "name": "x"})
    assert "Nicht gespeichert" in c.get(bad.headers["location"]).text
    unknown = c.post("/operator/clients", data={"csrf": token, "client_id": "x1", "name": "x",
                                                "default_partner": "nope"})
    assert "Nicht gespeichert" in c.get(unknown.headers["location"]).text and "x1" not in _file(console)["clients"]


def test_a_new_console_login_is_shown_once_hashed_and_signs_in_at_once(console: Console,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("olga")
    token = console.csrf(c, "/operator/clients/demo")
    r = c.post("/operator/clients/demo/logins", data={"csrf": token, "login": "kasse@demo", "role": "submit"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    password = _shown_password(r.text)
    stored = _file(console)["web"]["users"]["kasse@demo"]
    assert stored["client"] == "demo" and stored["role"] == "submit" and verify_password(password,
                                                                                        stored["password_hash"])
    assert password not in Path(console.app.config.source).read_text(encoding="utf-8")
    new = console.client()
    assert console.login(new, "kasse@demo", password).status_code == 303  # the running console took it
    assert "Forderungen" in new.get("/claims").text and new.get("/operator/clients").status_code == 404
    assert console.login(Console(console.app, build_web_app(console.app)).client(), "kasse@demo",
                         password).status_code == 303  # and a console started now reads it from the config
    assert "kasse@demo" in c.get("/operator/clients/demo").text

    r = c.post("/operator/clients/demo/password", data={"csrf": token, "kind": "web", "login": "kasse@demo"})
    second = _shown_password(r.text)
    assert second != password
    assert console.login(console.client(), "kasse@demo", password).status_code == 401
    assert console.login(console.client(), "kasse@demo", second).status_code == 303
    dup = c.post("/operator/clients/demo/logins", data={"csrf": token, "login": "kasse@demo", "role": "read"})
    assert "exists already" in c.get(dup.headers["location"]).text
    foreign = c.post("/operator/clients/demo/password", data={"csrf": token, "kind": "web", "login": "ben"})
    assert "Nicht gespeichert" in c.get(foreign.headers["location"]).text  # ben is a login of another client
    assert console.login(console.client(), "ben", "ben password 22").status_code == 303
    assert "web.admin login=olga client=demo change=web_login_added target=kasse@demo" in caplog.text
    assert "change=web_password_set" in caplog.text
    for secret in (password, second):
        assert secret not in caplog.text

    signed_in = console.client()
    assert console.login(signed_in, "kasse@demo", second).status_code == 303
    assert signed_in.get("/claims").status_code == 200
    r = c.post("/operator/clients/demo/logins/remove", data={"csrf": token, "login": "kasse@demo"})
    assert "Anmeldung kasse@demo entfernt" in c.get(r.headers["location"]).text
    assert "kasse@demo" not in _file(console)["web"]["users"]
    assert signed_in.get("/claims").headers["location"] == "/login"  # its session ends at once
    assert console.login(console.client(), "kasse@demo", second).status_code == 401
    r = c.post("/operator/clients/demo/logins/remove", data={"csrf": token, "login": "ben"})
    assert "Nicht gespeichert" in c.get(r.headers["location"]).text and "ben" in _file(console)["web"]["users"]
    assert "change=web_login_removed target=kasse@demo" in caplog.text


def test_soap_and_sftp_passwords_and_an_ssh_key(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("olga")
    token = console.csrf(c, "/operator/clients/other")
    r = c.post("/operator/clients/other/password", data={"csrf": token, "kind": "soap", "username": "other-erp"})
    soap_pw = _shown_password(r.text)
    soap = console.app.config.clients["other"].soap
    assert soap.username == "other-erp" and soap.password_hash and verify_password(soap_pw, soap.password_hash)
    r = c.post("/operator/clients/other/password", data={"csrf": token, "kind": "sftp"})
    sftp_pw = _shown_password(r.text)
    assert verify_password(sftp_pw, str(load_config(console.app.config.source).clients["other"].sftp.password_hash))
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    r = c.post("/operator/clients/other/keys", data={"csrf": token, "key": key + " ops@laptop"})
    page = c.get(r.headers["location"]).text
    fp = re.search(r"Schlüssel (SHA256:\S+) hinzugefügt", page)
    assert fp and fp.group(1) in page
    assert console.app.config.clients["other"].sftp.authorized_keys
    bad = c.post("/operator/clients/other/keys", data={"csrf": token, "key": "ssh-ed25519 not-a-key"})
    assert "Nicht gespeichert" in c.get(bad.headers["location"]).text
    assert f"change=sftp_key_added target={fp.group(1)}" in caplog.text
    for secret in (soap_pw, sftp_pw, key.split()[1]):
        assert secret not in caplog.text


def test_clients_get_404_on_every_admin_url_and_unknown_clients_too(console: Console) -> None:
    anna = console.client("anna")
    token = console.csrf(anna, "/claims")
    for path in ("/operator/clients", "/operator/clients/demo", "/operator/clients/other"):
        assert anna.get(path).status_code == 404, path
    for path, data in (("/operator/clients", {"client_id": "evil", "name": "x"}),
                       ("/operator/clients/demo/logins", {"login": "evil", "role": "submit"}),
                       ("/operator/clients/demo/logins/remove", {"login": "vera"}),
                       ("/operator/clients/demo/password", {"kind": "web", "login": "anna"}),
                       ("/operator/clients/demo/keys", {"key": "ssh-ed25519 AAAA"})):
        assert anna.post(path, data={"csrf": token, **data}).status_code == 404, path
    assert "evil" not in _file(console)["clients"] and "evil" not in _file(console).get("web", {}).get("users", {})
    assert "vera" in _file(console)["web"]["users"]
    op = console.client("olga")
    token = console.csrf(op, "/operator/clients")
    assert op.get("/operator/clients/nobody").status_code == 404
    assert op.post("/operator/clients/nobody/logins", data={"csrf": token, "login": "x"}).status_code == 404


def test_a_login_added_outside_the_console_is_taken_by_the_config_watcher(console: Console) -> None:
    """The path of `gateway clients ...` or an edit by hand: serve's config watcher (watchdog) reloads the logins."""
    from gateway.entrypoints.config_watch import ClientReloader, ConfigWatcher
    from gateway.entrypoints.web.users import UserBook
    from gateway.services import clients_admin
    from tests.support import wait_for
    app = console.app
    book = UserBook(app.config)
    watcher = ConfigWatcher(Path(app.config.source), ClientReloader(app, None, None, book.prepare_reload))
    watcher.start()
    try:
        clients_admin.add_web_user(app.config, "outside", client_id="other", role="read",
                                   password="outside password 1")
        user = wait_for("the watcher to take the new login", lambda: book.get("outside"), timeout=20)
    finally:
        watcher.stop()
    assert user.client_id == "other" and not user.can_submit
    assert asyncio.run(book.check("outside", "outside password 1", None)).user == user


def test_a_reload_with_a_bad_console_login_changes_nothing(console: Console, tmp_path: Path) -> None:
    """All or nothing: a login of an unknown client refuses the whole reload, clients included."""
    from gateway.config import load_config as load
    from gateway.entrypoints.config_watch import ClientReloader
    from gateway.entrypoints.web.users import UserBook
    from gateway.errors import ConfigError
    app = console.app
    doc = _file(console)
    doc["clients"]["demo"]["name"] = "Renamed"
    anna_hash = doc["web"]["users"]["anna"]["password_hash"]
    doc["web"]["users"]["ghost"] = {"client": "nobody", "role": "read", "password_hash": anna_hash}
    edited = tmp_path / "gateway.yaml"
    edited.write_text(yaml.safe_dump(doc), encoding="utf-8")
    new = load(edited)
    book = UserBook(app.config)
    with pytest.raises(ConfigError, match="unknown client 'nobody'"):
        ClientReloader(app, None, None, book.prepare_reload).apply(new)
    assert app.config.clients["demo"].name != "Renamed" and book.get("ghost") is None and book.get("anna")
