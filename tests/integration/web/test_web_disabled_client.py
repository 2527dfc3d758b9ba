"""A disabled client (``gateway clients disable``, ``clients.<id>.enabled: false``) has no console login, as it has
no SOAP or SFTP login: its people could still log in, upload files and hand over claims, and their open sessions
went on. Now its logins count as unknown and its sessions end at their next request, in a running console too
(the config reloader passes the changed clients to the console's logins)."""

from __future__ import annotations

from gateway.services import clients_admin
from tests.integration.web.conftest import PASSWORDS, Console


def test_a_disabled_clients_logins_cannot_log_in_and_their_sessions_end(console: Console) -> None:
    anna, vera, ben = console.client("anna"), console.client("vera"), console.client("ben")
    apply = console.web.state.apply_config
    try:
        assert apply(clients_admin.set_enabled(console.app.config, "demo", False))
        for c in (anna, vera):  # open sessions of the client's logins end at their next request
            r = c.get("/claims")
            assert r.status_code == 303 and r.headers["location"] == "/login"
        refused = console.login(console.client(), "anna", PASSWORDS["anna"])
        assert refused.status_code == 401 and "Benutzername oder Passwort falsch" in refused.text
        t = console.csrf(anna, "/login")
        upload = anna.post("/upload", data={"csrf": t}, files={"file": ("x.csv", b"a;b\n", "text/csv")})
        assert upload.status_code == 303 and upload.headers["location"] == "/login"
        assert ben.get("/claims").status_code == 200  # another client's login goes on
        assert console.login(console.client(), "olga", PASSWORDS["olga"]).status_code == 303  # operators too
    finally:
        apply(clients_admin.set_enabled(console.app.config, "demo", True))
    assert console.login(console.client(), "anna", PASSWORDS["anna"]).status_code == 303  # enabled again
    assert anna.get("/claims").headers["location"] == "/login"  # an ended session stays ended
