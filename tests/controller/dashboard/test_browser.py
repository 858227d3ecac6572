"""The dashboard in a real headless browser (Debian's chromium driven by Selenium through Debian's
chromium-driver) while a real `farmctl optimize` writes to the store in the background, against a real
agent: candidate rows appear on the optimize page while the run is still going (without reloading it),
the devices page shows the agent healthy with its fingerprint, and a run's layer table sorts on click.
Screenshots go to the test's temp folder, and to $EDGEFARM_SCREENSHOTS (docs/img) when it is set. The
model is the tiny conv of tests/models.py; EDGEFARM_DASHBOARD_MODEL=example:mobilenetv2 runs the same test on
a real network (slower: how docs/img's screenshots were made)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.measure.store import ResultsStore
from tests.controller.dashboard.common import ROOT, farmctl_env, start_dashboard

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                       reason="no chromium and chromedriver on PATH: install Debian's `apt-get install -y chromium "
                              "chromium-driver` (.ci/run does)"),
    pytest.mark.timeout(600),
    pytest.mark.slow,   # a real browser
]
TECHNIQUES = "fp16,int8-minmax,int8-percentile,int8-dynamic"   # cheap builds, four candidates measured in turn
MEASURE = ["--threads", "1", "--warmup", "2", "--min-iterations", "20", "--min-seconds", "0.3"]
WAIT_S = 240


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """The whole page as a PNG in the test's folder, and in $EDGEFARM_SCREENSHOTS when set (the docs' images)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60, poll_frequency=0.1).until(lambda d: d.execute_script(
        "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"))   # the plots drawn
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, 600)")
    # the whole page, past headless chromium's screen size: a viewport as tall as the page, for the shot
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1400, "height": min(int(height), 4000), "deviceScaleFactor": 1, "mobile": False})
    path = tmp_path / f"dashboard-{name}.png"
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    target = os.environ.get("EDGEFARM_SCREENSHOTS")
    if target:
        folder = Path(target) if Path(target).is_absolute() else ROOT / target
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    return path


def _inventory(tmp_path: Path, address: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"devices:\n  bench-x86:\n    address: {address}\n    class: x86\n"
                    "    labels: {rack: a, owner: ci}\n")
    return path


def _start_optimize(tmp_path: Path, store: Path, inventory: Path, model: Path | str) -> subprocess.Popen:
    args = [sys.executable, "-m", "controller", "--store", str(store), "--inventory", str(inventory), "-q",
            "optimize", str(model), "--device", "bench-x86", "--techniques", TECHNIQUES, *MEASURE,
            "--confirm-rounds", "2", "--out", str(tmp_path / "optimize-out")]
    return subprocess.Popen(args, stdout=open(tmp_path / "optimize.out", "w"),
                            stderr=open(tmp_path / "optimize.err", "w"), cwd=tmp_path, env=farmctl_env())


def _optimize_log(tmp_path: Path) -> str:
    return (tmp_path / "optimize.err").read_text()[-3000:]


def test_dashboard_in_a_browser_while_optimize_writes(tmp_path, start_agent, conv_onnx, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client, _ = start_agent("--job-time-limit", "120", name="bench-x86")
    fingerprint = client.info().fingerprint
    inventory = _inventory(tmp_path, client.address)
    store = tmp_path / "team.db"
    ResultsStore(store).close()            # the team's (empty) store, before anyone writes to it
    dash = start_dashboard(store, "--inventory", str(inventory), "--poll-seconds", "0.5")
    run = _start_optimize(tmp_path, store, inventory, os.environ.get("EDGEFARM_DASHBOARD_MODEL") or conv_onnx)
    try:
        wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.25)
        browser.get(dash.url + "optimize")
        link = wait.until(lambda d: d.refresh() or d.find_elements(By.CSS_SELECTOR, "#optimize-runs tr[data-key] a"))
        link[0].click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.candidates"))
        browser.execute_script("window.edgefarmMarker = 'same page'")

        def candidates(d):
            return [r.get_attribute("data-name") for r in d.find_elements(By.CSS_SELECTOR, "table.candidates tbody tr")]
        seen = wait.until(lambda d: [n for n in candidates(d) if n != "baseline"] or
                          (run.poll() is not None and ["<the run ended>"]))
        still_running = run.poll() is None
        screenshot(browser, tmp_path, "optimize-live")
        assert seen != ["<the run ended>"] and still_running, \
            f"no candidate row appeared while the run was going: {_optimize_log(tmp_path)}"
        assert browser.execute_script("return window.edgefarmMarker") == "same page"   # rows came without a reload
        assert run.wait(timeout=WAIT_S) in (0, 3), _optimize_log(tmp_path)  # 3: nothing met the constraints
        verdict = wait.until(lambda d: "decided" in d.find_element(By.CSS_SELECTOR, ".verdict").text and
                             d.find_element(By.CSS_SELECTOR, ".verdict").text)
        assert set(TECHNIQUES.split(",")) <= set(candidates(browser)), candidates(browser)
        assert "chose" in verdict or "no candidate meets the constraints" in verdict
        assert browser.find_element(By.CSS_SELECTOR, "img.plot").get_attribute("naturalWidth") != "0"
        screenshot(browser, tmp_path, "optimize")

        browser.get(dash.url + "devices")
        row = browser.find_element(By.CSS_SELECTOR, "tr[data-device='bench-x86']")
        assert row.get_attribute("data-status") == "healthy" and row.get_attribute("data-fingerprint") == fingerprint
        assert "healthy" in row.text and fingerprint[:16] in row.text and "rack=a" in row.text
        screenshot(browser, tmp_path, "devices")

        _runs_page_and_a_sorted_layer_table(browser, dash.url, tmp_path)
        _compare_page(browser, dash.url, store, tmp_path)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()
        dash.stop()


def _runs_page_and_a_sorted_layer_table(browser, url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    started = time.perf_counter()
    browser.get(url + "runs")
    loaded_s = time.perf_counter() - started
    timing = browser.execute_script("const t = performance.getEntriesByType('navigation')[0]; "
                                    "return [t.responseEnd - t.requestStart, t.loadEventEnd - t.startTime]")
    runs = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    print(f"runs page: {len(runs)} runs, loaded in {loaded_s * 1000:.0f} ms (server answer "
          f"{timing[0]:.0f} ms, load event {timing[1]:.0f} ms)")
    assert len(runs) >= 6   # the baseline's benchmark and profile, every candidate's paired loop
    screenshot(browser, tmp_path, "runs")
    browser.get(url + "runs?kind=profile")
    browser.find_element(By.CSS_SELECTOR, "#runs tbody tr a").click()
    table = browser.find_element(By.ID, "layers")

    def column(i: int) -> list[str]:
        return [r.find_elements(By.TAG_NAME, "td")[i].text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    names, ms = column(1), [float(v) for v in column(3)]
    assert names != sorted(names, key=str.lower), "the stored order is already by name: the test could not fail"
    headers[1].click()
    assert column(1) == sorted(names, key=str.lower) and headers[1].get_attribute("aria-sort") == "ascending"
    headers[3].click()                            # a number: largest first
    assert [float(v) for v in column(3)] == sorted(ms, reverse=True)
    headers[3].click()                            # again: the other way
    assert [float(v) for v in column(3)] == sorted(ms) and headers[3].get_attribute("aria-sort") == "ascending"
    assert headers[1].get_attribute("aria-sort") is None
    headers[3].click()
    screenshot(browser, tmp_path, "run")


def _compare_page(browser, url: str, store: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    bench_runs = ResultsStore(store).runs(kind="benchmark", status="ok")
    first, last = bench_runs[-1]["id"], bench_runs[0]["id"]
    browser.get(url + f"runs/{first}")          # a benchmark's page: its latency distribution
    assert browser.find_element(By.ID, "latency-plot").get_attribute("naturalWidth") not in (None, "0")
    screenshot(browser, tmp_path, "run-latency")
    browser.get(url + f"compare?sides={first}+{last}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare-latency tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [str(first), str(last)]
    screenshot(browser, tmp_path, "compare")
