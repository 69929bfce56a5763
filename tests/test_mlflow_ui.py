"""A Hydra sweep as MLflow's own UI shows it: a real `mlflow ui` server, looked at in headless Chromium.

The sweep (`python main.py -m model.ranking.l2_per_count=40,80`) makes one pipeline run per value, each with its
steps nested under it; the runs table lists the pipelines with the swept parameter and nDCG@10 and opens each one
onto its steps, and a step's artifacts hold its figures. ANIME_RECS_SCREENSHOTS=docs/screenshots refreshes the
screenshot the docs show.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.browser import browser_installed, screenshot, start_chrome
from tests.conftest import REPO, child_env

SWEPT = "model.ranking.l2_per_count"
NDCG = "ours.nDCG_at_10"
STEPS = "download,preprocess,neural_network,evaluate,user_prefs"
SMALL = ["data.sample_users=200", "data.sample_anime=120", "data.sample_mean_items=30", "data.num_reviews=5"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A two-value sweep of the pipeline, and `mlflow ui` serving its tracking store."""
    if not browser_installed():
        pytest.skip("no /usr/bin/chromium + /usr/bin/chromedriver; run scripts/install_browser.sh (apt) to enable this test")
    work = tmp_path_factory.mktemp("sweep")
    env = child_env(ANIME_RECS_WANDB_MODE="disabled")
    for key in ("ANIME_RECS_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(key, None)
    sweep = subprocess.run([sys.executable, str(REPO / "main.py"), "-m", f"{SWEPT}=40,80", f"main.execute_steps={STEPS}", *SMALL],
                           cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    db = work / "runs" / "mlflow.db"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
                           "--port", str(port), "--workers", "1"], cwd=work, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert ui.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(0.3)
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{db}")
        experiment = client.get_experiment_by_name("development")
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        yield SimpleNamespace(base=base, experiment=experiment, runs=runs, tmp=work)
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def test_the_sweep_reads_as_an_ml_experiment_in_the_mlflow_ui(swept: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    assert swept.experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = [run for run in swept.runs if run.data.tags.get("mlflow.runName") == "pipeline"]
    assert sorted(run.data.params[SWEPT] for run in parents) == ["40", "80"]
    assert all(NDCG in run.data.metrics for run in parents)  # the evaluate step's headline, on its pipeline's run
    figures = next(run for run in swept.runs if run.data.tags.get("mlflow.runName") == "user_prefs")

    driver = start_chrome("1700,950")
    try:
        wait = WebDriverWait(driver, 60, poll_frequency=0.1)
        body = lambda: driver.find_element(By.TAG_NAME, "body").text  # noqa: E731
        driver.get(f"{swept.base}/#/experiments/{swept.experiment.experiment_id}?workflowType=machine_learning")
        wait.until(lambda d: body().count("pipeline") >= 2)
        assert "Run Name" in body() and "Duration" in body() and "Token Usage" not in body()  # the runs table, not GenAI
        for close in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):  # the assistant's side panel
            close.click()
        # The swept parameter and nDCG@10 as columns of the runs table.
        next(b for b in driver.find_elements(By.XPATH, "//button") if b.text.strip() == "Columns").click()
        for label in (NDCG, SWEPT):
            wait.until(lambda d: d.find_elements(By.XPATH, f"//*[normalize-space(text())='{label}']"))
            driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{label}']")[-1].click()
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        shown = {f"{run.data.metrics[NDCG]}" for run in parents}
        wait.until(lambda d: all(value in body() for value in shown))
        # Each pipeline opens onto its steps.
        for expand in driver.find_elements(By.XPATH, "//button[contains(@data-component-id, 'runnamecellrenderer')]"):
            expand.click()
        wait.until(lambda d: body().count("evaluate") >= 2 and body().count("user_prefs") >= 2)
        screenshot(driver, "mlflow_sweep.png", swept.tmp)

        # A step's figures, under its run's artifacts.
        driver.get(f"{swept.base}/#/experiments/{swept.experiment.experiment_id}/runs/{figures.info.run_id}/artifacts")
        wait.until(lambda d: "figures" in body())
        driver.find_element(By.XPATH, "//*[normalize-space(text())='figures']").click()
        opened = f"//*[normalize-space(text())='figures']/following::*[normalize-space(text())='user_prefs_clouds'][1]"
        wait.until(lambda d: body().count("user_prefs_clouds") >= 2)  # figures/user_prefs_clouds beside the artifact itself
        driver.find_element(By.XPATH, opened).click()
        wait.until(lambda d: "favorite_genres.png" in body() and "figures/user_prefs_clouds" in body())
    finally:
        driver.quit()
