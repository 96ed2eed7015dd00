"""``hspace app default`` in a real browser (headless Chromium through selenium): move a slider, upload, stop.

Slow (the server imports Gradio and loads the default run; an inversion at 50 steps): ``make test-app``.
Skipped where Gradio, selenium, Chromium or its driver are missing (pip install 'hspace[app]' selenium;
apt install chromium chromium-driver). ``HSPACE_APP_SCREENSHOT=docs/app.png`` also saves the page's picture.
"""

import importlib.util
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import hspace
from hspace.data import load_images
from hspace.run import load_run
from hspace.viz import to_uint8

# Checked without importing: collecting this file in `make test` must not pay for Gradio's import (about 7 s).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("gradio", "selenium")), reason="needs gradio and selenium"
    ),
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")), reason="needs chromium and chromedriver"
    ),
]
DIRECTION = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """``hspace app default`` on a free port; yields (process, url); stopped with SIGTERM at the end."""
    port = free_port()
    command = [sys.executable, "-m", "hspace", "app", "default", "--port", str(port), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()  # the address, printed once the server listens
    assert line.startswith("hspace app: http://127.0.0.1:"), line + process.stdout.read()
    yield process, line.split()[2]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, process.stdout.read()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    # The system's driver, so that selenium's manager does not go looking for one on the network.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    yield driver
    driver.quit()


def wait_for(condition, seconds: float = 180.0, what: str = "the page"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def shown_image(driver, elem_id: str) -> str | None:
    from selenium.webdriver.common.by import By

    images = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return images[0].get_attribute("src") if images else None


def fetch_png(src: str) -> np.ndarray:
    with urllib.request.urlopen(src, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


def message(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "message").text


def test_slider_download_reset_upload_and_stop(server, browser, downloads, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    process, url = server
    browser.get(url)
    before = wait_for(lambda: shown_image(browser, "edited"), what="the first image")
    assert "edits: none" in message(browser)

    # Move one slider: a click three quarters along its track is a press, a move and a release.
    track = browser.find_element(By.CSS_SELECTOR, f"#slider-{DIRECTION} input[type=range]")
    ActionChains(browser).move_to_element_with_offset(track, track.size["width"] // 4, 0).click().perform()
    released = time.monotonic()
    after = wait_for(
        lambda: (
            (src := shown_image(browser, "edited")) != before and f"direction {DIRECTION}" in message(browser) and src
        )
    )
    print(f"\nslider released -> edited image shown in Chromium: {time.monotonic() - released:.2f} s")
    s = float(browser.find_element(By.CSS_SELECTOR, f"#slider-{DIRECTION} input[type=number]").get_attribute("value"))
    assert 0 < s <= 5

    # The shown image is hspace.sample with that edit, after PNG quantisation (nearest-enlarged by a whole factor).
    run = load_run("default")
    x_T = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = hspace.sample(
        run.model, x_T, run.timesteps, directions=run.shift_block, edits=[(DIRECTION, s)], t_stop=run.config.t_stop
    )
    shown = fetch_png(after)
    factor = shown.shape[0] // 32
    assert shown.shape[:2] == (32 * factor, 32 * factor)
    assert np.array_equal(shown[::factor, ::factor], to_uint8(expected)[0, ..., 0])
    wait_for(lambda: shown_image(browser, "sweep"), what="the sweep strip")
    if os.environ.get("HSPACE_APP_SCREENSHOT"):
        browser.save_screenshot(os.environ["HSPACE_APP_SCREENSHOT"])

    # The download is that image at the model's resolution; reset sets every slider back to 0.
    browser.find_element(By.ID, "download").click()
    saved = wait_for(lambda: list(downloads.glob("edited-*.png")), what="the downloaded PNG")
    assert np.array_equal(np.asarray(Image.open(saved[0])), to_uint8(expected)[0, ..., 0])
    browser.find_element(By.ID, "reset").click()
    wait_for(lambda: "edits: none" in message(browser), what="the reset")
    assert (
        browser.find_element(By.CSS_SELECTOR, f"#slider-{DIRECTION} input[type=number]").get_attribute("value") == "0"
    )

    # Another seed, typed in.
    seed = browser.find_element(By.CSS_SELECTOR, "#seed input")
    seed.clear()
    seed.send_keys("7" + Keys.ENTER)
    wait_for(lambda: "generated from seed 7" in message(browser), what="the sample of seed 7")

    # Upload a real digit: inverted, its reconstruction error shown.
    digit = ((load_images("mnist:12", 28, 1)[0, 0] + 1) * 127.5).round().byte().numpy()
    Image.fromarray(digit).save(tmp_path / "digit.png")
    upload = browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
    upload.send_keys(str(tmp_path / "digit.png"))
    wait_for(
        lambda: "your image digit.png" in message(browser) and "PSNR" in message(browser), what="the inverted upload"
    )
    command = browser.find_element(By.ID, "command").text
    assert "--image digit.png --inversion-steps 50" in command and "--edit" not in command

    # Not an image: a message in the page, and the server goes on.
    (tmp_path / "notes.txt").write_text("not an image")
    for clear in browser.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']"):  # the last upload
        clear.click()
    upload = browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
    upload.send_keys(str(tmp_path / "notes.txt"))
    wait_for(lambda: "notes.txt is not an image" in message(browser), what="the refusal of a text file")
    assert process.poll() is None
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
