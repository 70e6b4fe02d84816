"""TensorBoard as a user opens it on a finished run (headless Chromium): the first groups of TIME SERIES are the
scalars (train, then val), open; the images follow; the attention image carries its caption (the sentence, the
label, the prediction); HPARAMS shows lr, parameters, seed, batch and dataset first, and names the trial by the
run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import TINY_RUN, run_script


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A tiny sentiment run with the default TensorBoard logger, two validations."""
    root = tmp_path_factory.mktemp("tensorboard")
    tensorboard = [arg for arg in TINY_RUN if arg not in ("logger=csv", "trainer.max_steps=2")]
    args = [*tensorboard, "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "run_name=first-look"]
    result = run_script("train.py", *args, f"paths.cache_dir={root / 'cache'}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "outputs" / "sentiment" / "first-look"


@pytest.fixture(scope="module")
def server(finished):
    """`tensorboard --logdir outputs/` on the run's outputs folder: its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logdir = finished.parents[1]
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port)]
    process = subprocess.Popen([*command, "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/data/runs", timeout=2)
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "TensorBoard did not start"
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.skipif(chromium() is None, reason="no Chromium (.ci/run installs Debian's chromium)")
def test_tensorboard_opens_on_the_scalars_with_captioned_attention_and_useful_hparams(server, finished):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        page.goto(f"{server}/?darkMode=false#timeseries", wait_until="networkidle")
        page.wait_for_selector(".group-title", timeout=30_000)
        page.wait_for_timeout(2000)  # the groups' open/closed state is set once the tags are loaded
        groups = page.eval_on_selector_all(
            ".group-toolbar",
            """bars => bars.map(bar => ({title: bar.querySelector('.group-title').innerText.trim(),
                                         open: bar.innerHTML.includes('expand_less')}))""",
        )
        groups = [g for g in groups if g["title"] != "Pinned"]
        assert [g["title"] for g in groups][:2] == ["train", "val"], groups
        assert groups[0]["open"] and groups[1]["open"] and not groups[2]["open"], groups
        assert groups[2]["title"] == "views"  # the images come after the curves
        for card in ("train/loss", "train/lr", "train/tokens_per_sec"):  # on screen when the page opens
            assert page.get_by_text(card, exact=True).first.is_visible(), card

        page.goto(f"{server}/?darkMode=false#images", wait_until="networkidle")
        page.wait_for_timeout(3000)
        caption = page.get_by_text("predicted:").first.text_content()  # the image's description
        assert caption.startswith("text: ") and "label: " in caption and "predicted: " in caption, caption
        widths = [image.evaluate("i => i.naturalWidth") for image in page.locator("img").all()]
        assert len(widths) == 3 and min(widths) >= 360, widths  # two examples and the confusion matrix, legible

        page.goto(f"{server}/?darkMode=false#hparams", wait_until="networkidle")
        page.wait_for_timeout(4000)
        headers = [h.strip() for h in page.locator(".table-header").all_inner_texts() if h.strip()]
        shown = [h for h in headers if h in ("lr", "parameters", "seed", "batch", "dataset")]
        assert shown[:5] == ["lr", "parameters", "seed", "batch", "dataset"], headers
        assert page.get_by_text("sentiment/first-look/tensorboard/first-look").count() >= 1  # the trial's name
        browser.close()
