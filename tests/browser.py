"""A real headless browser for the tests: Debian's chromium + chromedriver, driven by Selenium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def browser_installed() -> bool:
    """Whether chromium and chromedriver are there (installed here on CI or as root; skips when that fails)."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return True
    can_install = os.environ.get("CI", "").lower() in ("1", "true") or os.geteuid() == 0
    if can_install and shutil.which("apt-get"):
        # A clean CI machine: install it the way the README says (scripts/install_browser.sh).
        result = subprocess.run(["bash", str(REPO / "scripts" / "install_browser.sh")], capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            pytest.skip(f"could not install chromium: {result.stderr.strip().splitlines()[-1:] or result.returncode}")
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def chrome_options(window: str = "1280,1000") -> Any:
    """Headless Chromium with no network but loopback: a request to another host goes to a closed port (Chromium
    never proxies localhost), so a page must work from its own server's files alone."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={window}",
                 "--proxy-server=http://127.0.0.1:9"):
        options.add_argument(flag)
    return options


def start_chrome(window: str = "1280,1000") -> Any:
    """A started headless Chromium driver (quit it when done)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chrome_options(window))


def screenshot(driver: Any, name: str, tmp_path: Path) -> None:
    """Save a screenshot under ``$ANIME_RECS_SCREENSHOTS`` (docs/screenshots refreshes the committed ones) or ``tmp_path``."""
    target = Path(os.environ.get("ANIME_RECS_SCREENSHOTS", tmp_path))
    target.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(target / name))
