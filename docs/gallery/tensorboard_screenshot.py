"""A screenshot of TensorBoard for the README gallery: serves a run's logs, opens a tab in headless Chromium.

    python docs/gallery/tensorboard_screenshot.py <run dir> docs/gallery/tensorboard_images.png --tab images

Needs Chromium (Debian's `chromium`) and Playwright (the dev extra).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tab", default="images", help="timeseries, images, text, hparams, ...")
    parser.add_argument("--filter", default="", help="a tag filter typed into the page's search box")
    parser.add_argument("--actual-size", action="store_true", help="images tab: show images at their own size")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    logdir = args.run / "tensorboard"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(6)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/?darkMode=false#{args.tab}", wait_until="networkidle")
            time.sleep(4)
            if args.actual_size:
                page.get_by_text("Show actual image size").click()
                time.sleep(2)
            if args.filter:
                page.keyboard.type(args.filter)
                time.sleep(2)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(args.out)


if __name__ == "__main__":
    main()
