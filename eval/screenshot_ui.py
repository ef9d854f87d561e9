"""Screenshots of the web UI with the real service and model, for the README (docs/img/).

    python -m eval.screenshot_ui --index indexes/default      # after `make run` has built the index

Starts ``rag serve`` on 127.0.0.1 with the settings in the environment, drives Debian's Chromium
through two questions (English, then a Korean follow-up), opens the first source, and saves
``ui-chat.png`` and ``ui-documents.png``. Prints the page's first paint and each answer's time.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from eval.common import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1200", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def _ask(driver, question: str, timeout: float) -> float:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    t = time.monotonic()
    box = driver.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys(question)
    driver.find_element(By.ID, "ask").click()
    WebDriverWait(driver, timeout, 0.5).until(
        lambda d: any(w in d.find_element(By.ID, "status").text for w in ("Answered", "Refused", "Error")))
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="indexes/default")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--question", default="What value of k does reciprocal rank fusion usually use?")
    ap.add_argument("--follow-up", default="한국어 문서에서는 그걸 어떻게 쓰나요?")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    from selenium.webdriver.common.by import By

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", args.index, "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        driver = _browser(Path("/tmp") / f"rag-ui-{port}")
        try:
            driver.get(base + "/ui/")
            time.sleep(2)
            paint = driver.execute_script("return performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
            times = [_ask(driver, args.question, args.timeout), _ask(driver, args.follow_up, args.timeout)]
            labels = driver.find_elements(By.CSS_SELECTOR, "#sources label")
            if labels:
                labels[0].click()
                time.sleep(1)
            args.out.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out / "ui-chat.png"))
            driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Documents')]").click()
            time.sleep(2)
            driver.save_screenshot(str(args.out / "ui-documents.png"))
            print(json.dumps({"paint_ms": dict(paint), "answer_seconds": [round(x, 1) for x in times]}))
        finally:
            driver.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
