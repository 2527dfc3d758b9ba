"""Chromium's form history after a search and a hand-over in the console: nothing of the debtor in it.

A browser keeps what is typed into a form's fields (by field name) in its profile (``Web Data``, table
``autofill``) and offers it again. Before the console's fields of debtor data said ``autocomplete="off"``, the
claims search ("Zacharias Quxbauer") and the hand-over form's names and street were kept there, in plain, and
offered to whoever typed into the same field next, for another debtor too.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.e2e.test_serve_demo import gateway
from tests.e2e.test_web_browser import CHROMEDRIVER, CHROMIUM
from tests.support import listening_port, serve_process, wait_for, wait_ready

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                                reason="needs Debian's chromium and chromium-driver")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    clients = {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"}}
    partners = {"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                "options": {"path": "var/partners/demo-agency"}}}
    web = {"enabled": True, "port": 0, "users": {
        "demo": {"client": "demo", "role": "submit", "password_file": "var/keys/web-demo.password"}}}
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", clients=clients,
                       partners=partners, routing=[], web=web, health={"listen": None})
    assert gateway(cfg, "keys", "init").returncode == 0
    assert gateway(cfg, "db", "upgrade").returncode == 0
    with serve_process(cfg) as (proc, out):
        wait_ready(proc, out)
        port = listening_port(out, "web")
        assert port, out.read_text()
        yield f"https://127.0.0.1:{port}", (tmp_path / "var" / "keys" / "web-demo.password").read_text().strip()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, out.read_text()


def test_the_browser_keeps_no_debtor_data_in_its_form_history(served: tuple[str, str]) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    url, password = served
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--ignore-certificate-errors", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.implicitly_wait(5)
    try:
        driver.get(url + "/login")
        driver.find_element(By.NAME, "login").send_keys("demo")
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        wait_for("the claims list", lambda: "/claims" in driver.current_url, 10)
        driver.get(url + "/claims")
        driver.find_element(By.CSS_SELECTOR, "input[name=q]").send_keys("Zacharias Quxbauer")
        driver.find_element(By.CSS_SELECTOR, "form[action='/claims/search'] button[type=submit]").click()
        wait_for("the search kept", lambda: 'name="q" value=""' in driver.page_source, 10)  # its clear button
        driver.get(url + "/claims/new")
        for name, value in (("reference", "AF-1"), ("amount", "10"), ("first_name", "Wilhelmina"),
                            ("last_name", "Quxwald"), ("street", "Quxstrasse"), ("house_number", "1"),
                            ("postal_code", "10115"), ("city", "Berlin")):
            field = driver.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        driver.find_element(By.CSS_SELECTOR, "form[action='/claims/new'] button[type=submit]").click()
        wait_for("the hand-over's answer", lambda: "/claims/new" not in driver.current_url, 10)
        driver.get("about:blank")
    finally:
        driver.quit()  # the profile's database is written by now
    try:
        kept = []
        for db in profile.rglob("Web Data"):
            with sqlite3.connect(db) as conn:
                kept += [value for _, value in conn.execute("select name, value from autofill")]
        assert kept, "the profile has no form history at all: the test would prove nothing"  # the login name
        for planted in ("Quxbauer", "Wilhelmina", "Quxwald", "Quxstrasse"):
            assert not [v for v in kept if planted in v], (planted, kept)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
