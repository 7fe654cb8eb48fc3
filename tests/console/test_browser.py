"""The console in a real browser: headless Chromium from the OS packages, driven by
Selenium with the OS's chromedriver, against a real ``duralog ui`` process.

Skipped, with the reason, when Selenium, Chromium or chromedriver is not installed
(``.ci/run`` installs them with apt-get when it can): never passed without running.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest
from support import PATIENCE, popen, read_line, wait_for

import duralog

HERE = Path(__file__).parent
#: Sets a mark if it ever runs: as a tag, in an attribute, in a script.
INJECTED = "<img src=x onerror=\"window.pwned='img'\"><script>window.pwned='script'</script>"


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _chromium() is None:
        return "no Chromium here (apt-get install chromium chromium-driver)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver here (apt-get install chromium-driver)"
    return None


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(
    tmp_path: Path, app: ModuleType, populate: Callable[[str, ModuleType], None]
) -> Iterator[tuple[str, str]]:
    """``duralog ui`` over a log of ``populate`` plus a workflow whose id and input are
    ``INJECTED``; a worker runs in this process. Yields (base URL, db)."""
    db = str(tmp_path / "browser.db")
    populate(db, app)
    port = free_port()
    command = ["duralog", "--db", db, "--app", "app_console", "ui", "--port", str(port)]
    server = popen(
        [sys.executable, "-m", *command],
        cwd=HERE,
        stderr=subprocess.PIPE,
        text=True,
    )
    read_line(server.stderr)
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.run(app.echo, INJECTED, id=INJECTED) == INJECTED
        yield f"http://127.0.0.1:{port}", db
    server.send_signal(signal.SIGINT)
    server.wait(timeout=PATIENCE)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(_chromium())
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    service = Service(executable_path=str(shutil.which("chromedriver")))
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, condition: Any) -> Any:
    """Wait for ``condition(driver)``; the live parts of a page are replaced as events
    come, so an element found a moment ago may be gone: look again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver, PATIENCE, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    return wait.until(condition)


def click(driver: Any, by: str, selector: str) -> None:
    """Click the element once it is there and clickable (the live parts of a page are
    redrawn as events come: an element found a moment before may be gone, or covered)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support import expected_conditions

    def clicked(d: Any) -> bool:
        try:
            expected_conditions.element_to_be_clickable((by, selector))(d).click()
        except (StaleElementReferenceException, ElementClickInterceptedException, AttributeError):
            return False
        return True

    until(driver, clicked)


def test_from_the_list_to_a_workflow_and_its_timeline(
    served: tuple[str, str], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    base, _ = served
    browser.get(base + "/")
    click(browser, By.LINK_TEXT, "retry-1")
    until(browser, lambda d: d.current_url.endswith("/workflows/retry-1"))
    # Read in one script: the live part may be redrawn between two WebDriver calls.
    bars = browser.execute_script(
        "return [...document.querySelectorAll('svg rect.shape')].map(e => e.getAttribute('class'))"
    )
    assert bars == [
        "shape retried",
        "shape retried",
        "shape attempt",
    ]
    # The page redraws its live part once its event stream opens: click what is there.
    click(browser, By.CSS_SELECTOR, "svg rect.shape.retried")
    detail = until(browser, lambda d: d.find_element(By.ID, "detail").text or None)
    assert '"kind":"StepRetrying"' in detail and "attempt 1 of r fails" in detail


def test_a_picked_shape_stays_picked_when_the_page_updates(
    served: tuple[str, str], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    base, db = served
    browser.get(base + "/workflows/wait-1")
    until(browser, lambda d: "on" in d.find_element(By.ID, "live-dot").get_attribute("class"))
    # Its step's bar is a sliver of a timeline that runs to now: clicked by script.
    script = (
        "document.querySelector('svg rect.shape.attempt').dispatchEvent(new MouseEvent('click'))"
    )
    browser.execute_script(script)
    shown = '"kind":"StepCompleted"'
    until(browser, lambda d: shown in d.find_element(By.ID, "detail").text)
    with duralog.Engine(db, worker=False) as engine:
        engine.get("wait-1").signal("go", "on")
    # The page draws the new events; what was picked is still picked, still shown.
    until(browser, lambda d: d.find_element(By.ID, "status").text == "COMPLETED")
    # Read in one script: the page may redraw between two WebDriver calls, and an
    # element found by the first would be stale for the second.
    detail, picked = browser.execute_script(
        "return [document.getElementById('detail').innerText,"
        " [...document.querySelectorAll('svg .shape.picked')].map(e => e.getAttribute('class'))]"
    )
    assert shown in detail
    assert picked == ["shape attempt picked"]


def test_the_time_travel_slider_changes_the_state(served: tuple[str, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, _ = served
    browser.get(base + "/workflows/retry-1")
    state = browser.find_element(By.ID, "state")
    until(browser, lambda d: '"last_seq": 9' in state.text)
    slider = browser.find_element(By.ID, "at")
    browser.execute_script(
        "arguments[0].value = 3; arguments[0].dispatchEvent(new Event('input'))", slider
    )
    until(browser, lambda d: '"last_seq": 3' in state.text)
    assert '"status": "RUNNING"' in state.text
    assert browser.find_element(By.ID, "at-label").text == "seq 3 of 9"


def test_a_signal_advances_the_workflow_without_a_reload(
    served: tuple[str, str], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    base, _ = served
    browser.get(base + "/workflows/wait-1")
    browser.execute_script("window.notReloaded = true")
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/signal']")
    form.find_element(By.NAME, "name").send_keys("go")
    payload = form.find_element(By.NAME, "payload")
    payload.clear()
    payload.send_keys('{"by": "browser"}')
    form.find_element(By.TAG_NAME, "button").click()
    until(browser, lambda d: d.find_element(By.ID, "status").text == "COMPLETED")
    assert browser.execute_script("return window.notReloaded") is True
    until(browser, lambda d: "WorkflowCompleted" in d.find_element(By.ID, "live-events").text)


def test_cancel_a_workflow(served: tuple[str, str], browser: Any, app: ModuleType) -> None:
    from selenium.webdriver.common.by import By

    base, db = served
    with duralog.Engine(db, worker=False) as engine:
        engine.start(app.waiter, "c", id="cancel-me")
    browser.get(base + "/workflows/cancel-me")
    until(browser, lambda d: "StepCompleted" in d.find_element(By.ID, "live-events").text)
    click(browser, By.CSS_SELECTOR, "button.cancel")
    # First the log (the click reached the server and the worker), then the page.
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.get("cancel-me")
        wait_for(
            lambda: handle.status() is duralog.WorkflowStatus.CANCELLED,
            what="the browser's cancel to end cancel-me",
        )
    until(browser, lambda d: d.find_element(By.ID, "status").text == "CANCELLED")


def test_an_injected_script_never_runs(served: tuple[str, str], browser: Any) -> None:
    base, _ = served
    for url in ("/", "/stats", f"/workflows/{quote(INJECTED, safe='')}"):
        browser.get(base + url)
        until(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        assert browser.execute_script("return window.pwned === undefined"), url
    # shown as text (read in one script: the live page may redraw its heading meanwhile)
    assert browser.execute_script("return document.querySelector('h1 .id').innerText") == INJECTED
    # A broken image added now fires its handler: once it has, the injected one's
    # would have fired too, had it been a tag.
    browser.execute_script(
        "const probe = document.createElement('img');"
        "probe.onerror = () => { window.probed = true; };"
        "probe.src = '/no-such-image'; document.body.appendChild(probe);"
    )
    until(browser, lambda d: d.execute_script("return window.probed === true"))
    assert browser.execute_script("return window.pwned === undefined")


def test_the_stats_page_draws_its_charts(served: tuple[str, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, _ = served
    browser.get(base + "/stats?since=1d")
    until(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg.chart")
    assert len(charts) == 4
    assert all(chart.size["width"] > 500 and chart.size["height"] > 100 for chart in charts)
    # Drawn, not only present: the browser gives the bars and the dots a size.
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-throughput rect.bar.completed")
    assert bars and all(bar.size["height"] > 0 for bar in bars)
    retries = browser.find_elements(By.CSS_SELECTOR, "#chart-failures rect.bar.retries")
    assert retries and retries[0].size["height"] > 0
    for quantile in ("p50", "p95", "p99"):
        dots = browser.find_elements(
            By.CSS_SELECTOR, f"#chart-latency g[data-series='{quantile}'] circle"
        )
        assert dots and dots[0].size["width"] > 0, quantile
