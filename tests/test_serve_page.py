"""The web page in a real headless browser (Debian's chromium + chromedriver, driven by Selenium).

Types a misspelt name, picks a suggestion, rates a few anime, asks for recommendations,
opens a known user's page, and saves screenshots (README "Use it" shows them; set
ANIME_RECS_SCREENSHOTS=docs/screenshots to refresh the committed ones).
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import browser_installed, screenshot, start_chrome
from tests.serve_world import FIRST_USER, free_port, publish_world, start_server, stop_server, world

GENRE_OF = {row.Name: row.Genres.split(",")[0] for row in world()[1].itertuples()}
#: How often a wait re-checks the page: Selenium's default 0.5 s made each of the ~12 waits below
#: sleep up to half a second after the page was already ready (the timeout stays 20 s).
POLL = 0.05


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    if not browser_installed():
        pytest.skip("no /usr/bin/chromium + /usr/bin/chromedriver; run scripts/install_browser.sh (apt) to enable this test")
    # The browser starts in a thread while the world is published and the server starts: neither
    # needs the other until the first page load, and each takes a second or two.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_chrome)
        try:
            root = tmp_path_factory.mktemp("page") / "artifacts"
            publish_world(root)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start_server([sys.executable, "-m", "anime_recs.cli.main", "--root", str(root), "serve", "--port", str(port)],
                                f"{base}/api/info")
        except BaseException:
            if starting.exception() is None:
                starting.result().quit()
            raise
        try:
            driver = starting.result()
        except BaseException:
            stop_server(proc)
            raise
    driver.implicitly_wait(0)
    try:
        yield driver, base
    finally:
        driver.quit()
        stop_server(proc)


def _shot(driver: object, name: str, tmp_path: Path) -> None:
    screenshot(driver, name, tmp_path)


def test_rate_a_few_anime_and_get_recommendations(browser: tuple[object, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver, base = browser
    wait = WebDriverWait(driver, 20, poll_frequency=POLL)
    driver.get(base)  # type: ignore[attr-defined]
    wait.until(lambda d: "anime_nn_embeddings:v" in d.find_element(By.ID, "version").text)

    for typed, wanted, rating in (("cowboy bebob", "Cowboy Bebop", "10"), ("trigan", "Trigun", "9"), ("samurai chanploo", "Samurai Champloo", "9")):
        box = driver.find_element(By.ID, "search")  # type: ignore[attr-defined]
        box.clear()
        box.send_keys(typed)
        suggestion = wait.until(ec.element_to_be_clickable(
            (By.XPATH, f"//ul[@id='suggestions']/li[starts-with(normalize-space(.), '{wanted}')]")))
        suggestion.click()
        wait.until(lambda d, w=wanted: d.find_element(By.ID, "picked-name").text == w)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar .card")) > 0)
        if wanted == "Cowboy Bebop":
            similar = [c.find_element(By.TAG_NAME, "h4").text for c in driver.find_elements(By.CSS_SELECTOR, "#similar .card")]
            assert sum(GENRE_OF[name] == "Action" for name in similar) >= len(similar) - 1, similar
            assert "score" in driver.find_element(By.CSS_SELECTOR, "#similar .card .facts").text
            _shot(driver, "similar.png", tmp_path)
        Select(driver.find_element(By.ID, "rating-value")).select_by_visible_text(rating)
        driver.find_element(By.ID, "add-rating").click()

    assert len(driver.find_elements(By.CSS_SELECTOR, "#my-ratings li")) == 3
    driver.find_element(By.ID, "recommend").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recs .card")) > 0)
    cards = driver.find_elements(By.CSS_SELECTOR, "#recs .card")
    names = [c.find_element(By.TAG_NAME, "h4").text for c in cards]
    assert not {"Cowboy Bebop", "Trigun", "Samurai Champloo"} & set(names)
    assert sum(GENRE_OF[name] == "Action" for name in names) >= 6, names
    assert all(c.find_element(By.CLASS_NAME, "why").text.startswith("like ") for c in cards)
    driver.execute_script("document.getElementById('mine').scrollIntoView()")
    _shot(driver, "recommendations.png", tmp_path)
    assert not driver.find_element(By.ID, "error").is_displayed()


def test_known_user_page_and_errors(browser: tuple[object, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, base = browser
    wait = WebDriverWait(driver, 20, poll_frequency=POLL)
    driver.get(base)  # type: ignore[attr-defined]
    box = driver.find_element(By.ID, "user-id")  # type: ignore[attr-defined]
    box.send_keys("42")
    driver.find_element(By.ID, "show-user").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "unknown user id 42" in driver.find_element(By.ID, "error").text
    box.clear()
    box.send_keys(str(FIRST_USER + 1))  # a romance fan
    driver.find_element(By.ID, "show-user").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#genre-cloud span")) > 0)
    biggest = max(driver.find_elements(By.CSS_SELECTOR, "#genre-cloud span"), key=lambda s: float(s.value_of_css_property("font-size")[:-2]))
    assert biggest.text == "Romance"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#similar-users tbody tr")) == 5
    driver.execute_script("document.getElementById('user').scrollIntoView()")
    _shot(driver, "user.png", tmp_path)


def test_api_docs_render_offline(browser: tuple[object, str]) -> None:
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, base = browser
    paths = httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{base}{page}", timeout=10).text
        assert "cdn." not in html and "https://" not in html.replace("https://swagger.io", ""), html[:500]
    wait = WebDriverWait(driver, 20, poll_frequency=POLL)
    driver.get(f"{base}/docs")  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == operations)
    shown = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}  # type: ignore[attr-defined]
    assert "/api/anime/similar" in shown
    driver.get(f"{base}/redoc")  # type: ignore[attr-defined]
    wait.until(lambda d: "/api/anime/similar" in d.find_element(By.TAG_NAME, "body").text)
