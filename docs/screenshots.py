#!/usr/bin/env python3
"""Take the screenshots of the web console that the README shows (docs/images/).

usage:
  python docs/screenshots.py          # needs duralog[ui], selenium, chromium, chromedriver

Builds a small log in a temp dir (orders, one that retries, one waiting for a
signal, one that failed), serves it with `duralog ui` and saves the workflows page,
one workflow's page and the stats page as PNG files.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duralog

IMAGES = Path(__file__).resolve().parent / "images"


@duralog.step(name="shots.reserve")
def reserve(order: str) -> str:
    return f"reserved {order}"


@duralog.step(name="shots.charge", retry=duralog.RetryPolicy(max_attempts=4, initial_interval=0.2))
def charge(order: str, cents: int) -> str:
    if order.endswith("7") and duralog.step_info().attempt < 3:
        raise ConnectionError("payments API timed out")
    if order.endswith("9"):
        raise ValueError(f"card declined for {order}")
    return f"charged {order} {cents}"


@duralog.workflow(name="checkout")
async def checkout(order: str, cents: int) -> str:
    await reserve(order)
    receipt = await charge(order, cents)
    await duralog.sleep(0.3)
    if order.endswith("5"):
        await duralog.wait_signal("approval")
    return receipt


def build(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handles = [
            engine.start(checkout, f"o-{i}", 1000 + i, id=f"order-o-{i}") for i in range(1, 10)
        ]
        for handle in handles:
            if handle.id.endswith("5"):
                continue
            with contextlib.suppress(duralog.WorkflowFailed):
                handle.result(timeout=30)


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(driver: Any) -> bool:
        """The page is complete, and a workflow's state panel has what the slider asked."""
        states = driver.find_elements(By.ID, "state")
        return bool(driver.execute_script("return document.readyState") == "complete") and (
            not states or states[0].text.startswith("{")
        )

    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "shop.db")
        build(db)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "duralog", "--db", db, "ui", "--port", str(port)],
            stderr=subprocess.PIPE,
        )
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,900"):
            options.add_argument(argument)
        driver = webdriver.Chrome(
            options=options, service=Service(shutil.which("chromedriver") or "chromedriver")
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):  # until it answers
                try:
                    driver.get(base + "/")
                    if "workflows" in driver.title:
                        break
                except Exception:
                    pass
                time.sleep(0.1)
            for name, url in [
                ("console-workflows", "/"),
                ("console-workflow", "/workflows/order-o-7"),
                ("console-stats", "/stats"),
            ]:
                driver.get(base + url)
                WebDriverWait(driver, 30).until(loaded)
                driver.save_screenshot(str(IMAGES / f"{name}.png"))
                print(f"wrote docs/images/{name}.png")
        finally:
            driver.quit()
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
