"""The operator's admin pages in a real browser (headless Chromium, Selenium) against a real ``gateway serve``:
the partners page, a new console login for a client added in the browser and signing in at once with the
password shown once, and a mapping drafted from a sample, previewed and installed.

Reuses the console walk's serve and browser fixtures (``test_web_browser``): one serve of its own for this
module. Screenshots go to a temporary folder, or to $GATEWAY_WEB_SCREENSHOTS.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e import test_web_browser as walk
from tests.e2e.test_web_browser import Walk, pytestmark  # noqa: F401 - the skip when Chromium is missing

# Every fixture of the console walk (served, browser and whatever these need), so this module gets its own
# serve and browser from the same definitions, however they grow.
globals().update({name: value for name, value in vars(walk).items()
                  if type(value).__name__ == "FixtureFunctionDefinition" or hasattr(value, "_pytestfixturefunction")})


def test_operator_adds_a_client_login_that_signs_in_at_once(served: tuple[str, Path, Path], browser: object,
                                                           tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select
    url, base, out = served
    shots = Path(os.environ.get("GATEWAY_WEB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    w = Walk(browser, url, shots)
    operator_pw = (base / "var" / "keys" / "web-operator.password").read_text().strip()
    w.login("operator", operator_pw)

    w.go("/operator/partners")
    assert "demo-agency" in w.text() and "broken-agency" in w.text() and "directory" in w.text()
    assert "partner_sync" in w.text() or "dispatch" in w.text()  # the supervisor's tasks, inside serve
    w.shot("partners")

    w.go("/operator/clients/demo")
    w.css("form.add-login input[name=login]").send_keys("kasse")  # type: ignore[attr-defined]
    Select(w.css("form.add-login select[name=role]")).select_by_value("submit")  # type: ignore[arg-type]
    w.shot("client-admin")
    w.click("form.add-login button")
    assert "Neues Passwort" in w.text() and "kasse" in w.css("#new-login").text  # type: ignore[attr-defined]
    password = str(w.css("#new-password").text).strip()  # type: ignore[attr-defined]
    assert len(password) >= 20 and password not in out.read_text()  # shown once, never logged
    w.logout()

    w.login("kasse", password)
    assert "Angemeldet als kasse" in w.text() and "Forderungen" in w.text()
    w.logout()
    assert "web.admin login=operator client=demo change=web_login_added target=kasse" in out.read_text()


def test_operator_adds_a_client_and_installs_a_mapping_drafted_from_a_sample(served: tuple[str, Path, Path],
                                                                            browser: object, tmp_path: Path) -> None:
    from tests.conftest import ROOT
    url, base, out = served
    shots = Path(os.environ.get("GATEWAY_WEB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    w = Walk(browser, url, shots)
    w.login("operator", (base / "var" / "keys" / "web-operator.password").read_text().strip())

    w.go("/operator/clients")
    w.css("input[name=client_id]").send_keys("fitness-nord")  # type: ignore[attr-defined]
    w.css("input[name=name]").send_keys("Fitness Nord GmbH")  # type: ignore[attr-defined]
    w.click("form[action='/operator/clients'] button")
    assert "Mandant fitness-nord angelegt" in w.text()

    w.go("/operator/mappings/fitness-nord")
    w.css("input[type=file]").send_keys(str(ROOT / "examples" / "demo.csv"))  # type: ignore[attr-defined]
    w.click("form.sample button")
    assert "Entwurf aus der Beispieldatei" in w.text()
    w.click("form.work button[value=preview]")
    assert "Vorschau: demo.csv" in w.text() and "debtor_minor" in w.text()
    w.css("section.preview").location_once_scrolled_into_view  # type: ignore[attr-defined]  # noqa: B018
    w.shot("mapping-preview")
    w.click("form.work button[value=install]")
    assert "Installiert als fitness-nord.yaml" in w.text()
    assert (base / "mappings" / "fitness-nord.yaml").is_file()
    w.logout()
    log = out.read_text()
    assert "web.mapping_installed login=operator client=fitness-nord" in log and "Becker" not in log
