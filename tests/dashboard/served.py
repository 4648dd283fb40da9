"""A real `patas dashboard` for the tests: started as a user starts it, its URL read from what it
prints, stopped by its PID; and a headless Chromium driven by Selenium to look at its pages."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.running import start_patas

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
SWEEP_TIMEOUT_S = 60.0
PAGE_TIMEOUT_S = 30.0  # for a page to load and fetch its data (not the deadlines a test checks)


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str  # as printed, with its token

    @property
    def base(self) -> str:
        return self.url.split("/?token=", 1)[0]

    @property
    def token(self) -> str:
        return self.url.split("?token=", 1)[1]

    def stop(self) -> str:
        """Stop it (by its PID) and return what it wrote on stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.communicate(timeout=STOP_TIMEOUT_S)[1]
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.communicate()[1]


def start_dashboard(cwd: Path, *args: str) -> Served:
    """`patas dashboard --port 0 ARGS` in `cwd`, once it printed its URL."""
    process = start_patas("dashboard", "--port", "0", *args, cwd=cwd)
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the socket listens
    if "http://" not in line:
        process.kill()
        raise AssertionError(f"patas dashboard printed {line!r}; stderr: {process.communicate()[1]}")
    return Served(process, line.split(": ", 1)[1].strip())


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a plain GET (no cookies kept)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def browser_or_skip() -> Any:
    """Headless Chromium through the chromedriver on the PATH, or skip saying what is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install --test installs them as root)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("needs selenium (scripts/install --test installs it)")
    # Selenium must never fetch a driver or send usage statistics: the driver is Debian's.
    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)  # --no-sandbox: Chromium's sandbox refuses to run as root
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something true; that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.02)


def text_of(browser: Any, selector: str) -> str:
    """The text of the first element the CSS selector finds ("" if none)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, selector)
    try:
        return str(found[0].text) if found else ""
    except StaleElementReferenceException:  # the page replaced it between finding and reading
        return ""


def gate(folder: Path, name: str) -> str:
    """A shell loop that waits until the test creates `folder/name`."""
    return f"while [ ! -e {folder / name} ]; do sleep 0.02; done"
