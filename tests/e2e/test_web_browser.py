"""The web console in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by
Selenium against a real ``gateway serve`` with the console on, its demo logins made by ``keys init``.

One serve process and one browser for the whole walk (SQLite only, to stay within ~60 s): log in, upload the
demo file and read the ack table, open the held minor's claim and read why, release the run's held claims
(the minor left out by default), see the claims turn green as the demo agency (its simulator, one step
every half second) reports them paid and the run green, put a coloured label on a claim and filter by it,
hand over a claim with its invoice and download the invoice again, send a message, cancel a claim; the
operator retries a dead letter of a partner whose certificate is missing. Screenshots go to a temporary
folder, or to $GATEWAY_WEB_SCREENSHOTS.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.simulators.agency import STATUS_MAP
from tests.conftest import ROOT, write_config
from tests.e2e.test_serve_demo import gateway
from tests.support import listening_port, serve_process, wait_for, wait_ready

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                                       "chromium-driver; .ci/run installs them)")


class Walk:
    """The browser on the console, with screenshots by name."""

    def __init__(self, driver: object, url: str, shots: Path) -> None:
        self.d, self.url, self.shots = driver, url, shots

    def go(self, path: str) -> None:
        self.d.get(self.url + path.lstrip("/"))  # type: ignore[attr-defined]

    def text(self) -> str:
        from selenium.webdriver.common.by import By
        return str(self.d.find_element(By.TAG_NAME, "body").text)  # type: ignore[attr-defined]

    def css(self, selector: str) -> object:
        from selenium.webdriver.common.by import By
        return self.d.find_element(By.CSS_SELECTOR, selector)  # type: ignore[attr-defined]

    def click(self, selector: str) -> None:
        """Click, then wait until the browser has left the page (a form post answers with a new page)."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait
        page = self.css("body")
        self.css(selector).click()  # type: ignore[attr-defined]

        def left(_: object) -> bool:
            try:
                page.is_enabled()  # type: ignore[attr-defined]
                return False
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                # Chromium, asked mid-navigation, may say so in its own words instead of "stale".
                if "does not belong to the document" in str(exc):
                    return True
                raise
        WebDriverWait(self.d, 30).until(left)

    def shot(self, name: str) -> None:
        self.d.save_screenshot(str(self.shots / f"{name}.png"))  # type: ignore[attr-defined]

    def login(self, login: str, password: str) -> None:
        self.go("/login")
        self.css("input[name=login]").send_keys(login)  # type: ignore[attr-defined]
        self.css("input[name=password]").send_keys(password)  # type: ignore[attr-defined]
        self.click("form[action='/login'] button")

    def logout(self) -> None:
        self.click("form[action='/logout'] button")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    base = tmp_path_factory.mktemp("webe2e")
    clients = {"demo": {"name": "Demo Fitness", "mapping": "demo", "default_partner": "demo-agency",
                        "hold_all": True},
               "broken": {"name": "Broken", "mapping": "demo", "default_partner": "broken-agency"}}
    # The demo agency of ``make run``, quicker: it answers each delivered case and moves it one step every half
    # second (accepted, in progress, paid), and the gateway pulls its status files every half second.
    partners = {"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                "options": {"path": "var/partners/demo-agency"}, "status_map": STATUS_MAP,
                                "sync": {"every_seconds": 0.5}, "simulator": {"enabled": True, "step_seconds": 0.5}},
                # its certificate never exists: every batch to it fails (retryably: a missing file is the
                # operator's to mend), and with one attempt and no retry window it is a dead letter at once
                "broken-agency": {"adapter": "directory", "certificate": "missing/broken-agency.crt",
                                  "options": {"path": "var/partners/broken-agency"}, "max_attempts": 1,
                                  "retry": {"retry_for_seconds": 0}}}
    web = {"enabled": True, "port": 0, "users": {
        "demo": {"client": "demo", "role": "submit", "password_file": "var/keys/web-demo.password"},
        "operator": {"operator": True, "password_file": "var/keys/web-operator.password"}}}
    cfg = write_config(base, f"sqlite:///{base / 'var' / 'gateway.db'}", clients=clients, partners=partners,
                       routing=[], web=web, health={"listen": None})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    (base / "inbox" / "broken" / "upload").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "demo.csv", base / "inbox" / "broken" / "upload" / "demo.csv")
    with serve_process(cfg) as (proc, out):
        wait_ready(proc, out)
        port = listening_port(out, "web")
        assert port, out.read_text()
        yield f"https://127.0.0.1:{port}/", base, out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, out.read_text()
        assert "web.stopped" in out.read_text()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    profile = tempfile.mkdtemp(prefix="chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--ignore-certificate-errors", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.implicitly_wait(5)  # finding an element polls up to 5 s while a page loads
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_a_client_and_the_operator_work_through_the_console(served: tuple[str, Path, Path], browser: object,
                                                           downloads: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    url, base, out = served
    shots = Path(os.environ.get("GATEWAY_WEB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    w = Walk(browser, url, shots)
    keys = base / "var" / "keys"
    demo_pw, operator_pw = ((keys / f"web-{n}.password").read_text().strip() for n in ("demo", "operator"))
    log = out.read_text()
    assert demo_pw in log and operator_pw in log and f"Web console: {url}" in log  # shown at start-up

    w.login("demo", "wrong password")
    assert "Benutzername oder Passwort falsch" in w.text()
    w.login("demo", demo_pw)
    assert "Forderungen" in w.text() and "Angemeldet als demo" in w.text()
    # Chromium took the session cookie with its __Host- prefix (it refuses one not Secure, not Path=/ or with a
    # Domain), and it is the only session cookie it holds
    cookies = {c["name"]: c for c in browser.get_cookies()}  # type: ignore[attr-defined]
    assert cookies["__Host-gw_session"]["secure"] and cookies["__Host-gw_session"]["path"] == "/"
    assert "gw_session" not in cookies

    w.go("/upload")
    w.shot("upload")
    w.css("input[type=file]").send_keys(str(ROOT / "examples" / "demo.csv"))  # type: ignore[attr-defined]
    w.click("form[action='/upload'] button")
    assert "Ergebnis: demo.csv" in w.text() and "8 zurückgehalten" in w.text()
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.ack tbody tr")) > 8  # type: ignore[attr-defined]
    w.shot("ack")

    w.go("/claims?state=held&sort=reference&dir=asc")
    w.shot("claims")
    browser.get(browser.find_element(By.LINK_TEXT, "RE-2025-0004").get_attribute("href"))  # type: ignore
    assert "Warum nicht übergeben?" in w.text() and "debtor_minor" in w.text()
    assert "RE-2025-0004" in browser.title and "Becker" not in browser.title  # type: ignore[attr-defined]
    w.shot("claim-why")
    minor_url = browser.current_url  # type: ignore[attr-defined]

    w.go("/runs")
    w.click("table a[href^='/runs/']")
    boxes = browser.find_elements(By.CSS_SELECTOR, "input[name=claim]")  # type: ignore[attr-defined]
    assert len(boxes) == 8 and sum(1 for b in boxes if not b.is_selected()) == 1  # the minor left out
    w.shot("run-release")
    w.click("form[action$='/release'] button")
    assert "7 Forderung(en) freigegeben" in w.text()
    # The demo agency takes the claims, works them and reports them paid: the rows turn green, so does the run.
    wait_for("the demo agency to report the released claims paid",
             lambda: (w.go("/claims?state=closed_paid&sort=reference&dir=asc"),
                      len(browser.find_elements(By.CSS_SELECTOR, "tr.st-closed_paid")) == 7)[1],  # type: ignore
             timeout=30)
    assert "bezahlt" in w.text()
    w.shot("claims-paid")
    w.go("/runs")
    assert browser.find_elements(By.CSS_SELECTOR, "tr.run-confirmed")  # type: ignore[attr-defined]
    assert "vom Inkassobüro bestätigt" in w.text()

    w.go("/labels")  # a label of the client's own, in red, on a claim, and the list filtered by it
    w.css("section.card input[name=name]").send_keys("Rückruf")  # type: ignore[attr-defined]
    w.css("section.card select[name=colour] option[value=red]").click()  # type: ignore[attr-defined]
    w.click("section.card form button")
    assert "Markierung gespeichert" in w.text()
    w.go("/claims?sort=reference&dir=asc")
    browser.get(browser.find_element(By.LINK_TEXT, "RE-2025-0001").get_attribute("href"))  # type: ignore
    w.click("form[action$='/labels'] button")
    assert "Markierungen geändert" in w.text() and w.css("#labels .label.lb-red").text.startswith("Rückruf")  # type: ignore
    w.shot("claim-labels")
    w.go("/claims?label=R%C3%BCckruf")
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "table.claims td:first-child > a")] == [  # type: ignore
        "RE-2025-0001"]

    invoice = tmp_path / "rechnung-4711.pdf"  # handed over with its invoice, then downloaded again
    invoice.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    w.go("/claims/new")
    for name, value in (("reference", "WEB-DOC-1"), ("amount", "120,00"), ("company", "Muster GmbH"),
                        ("street", "Am Markt"), ("house_number", "2"), ("postal_code", "20095"),
                        ("city", "Hamburg"), ("email", "buchhaltung@muster.example")):
        w.css(f"input[name={name}]").send_keys(value)  # type: ignore[attr-defined]
    w.css("select[name=kind] option[value=business]").click()  # type: ignore[attr-defined]
    w.css("input[name=document]").send_keys(str(invoice))  # type: ignore[attr-defined]
    w.click("form[action='/claims/new'] button")
    assert "WEB-DOC-1" in browser.title, w.text()  # type: ignore[attr-defined]
    w.css("#documents a").click()  # type: ignore[attr-defined]
    wait_for("the invoice to be downloaded", lambda: (downloads / invoice.name).is_file(), timeout=15)
    assert (downloads / invoice.name).read_bytes() == invoice.read_bytes()

    browser.get(minor_url)  # type: ignore[attr-defined]
    w.css("textarea[name=text]").send_keys("Bitte Vertreter ermitteln")  # type: ignore[attr-defined]
    w.click("form[action$='/message'] button")
    # the minor's claim is held: the agency does not have it, so the note says the message is kept here
    assert "Nachricht gespeichert" in w.text() and "Bitte Vertreter ermitteln" in w.text()
    w.click("form[action$='/cancel'] button")
    assert "Storno erfasst" in w.text() and "storniert" in w.text()
    w.logout()

    w.login("operator", operator_pw)
    w.go("/operator/outbox")
    wait_for("the broken partner's dead letter",
             lambda: (w.go("/operator/outbox?status=dead"), "broken-agency" in w.text())[1], timeout=20)
    w.shot("outbox")
    w.click("form[action$='/retry'] button")
    assert "wird erneut gesendet" in w.text()
