"""The MOS page in a real browser (headless Chromium through selenium): mark, save, score.

Skipped where Chromium, its driver or selenium are missing (apt install chromium chromium-driver;
pip install selenium).
"""

import json
import shutil
import time

import pytest

from hspace import presets
from hspace.discover import discover
from hspace.mos import build_mos_page, score_marks
from hspace.run import load_run

webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")), reason="needs chromium and chromedriver"
    ),
]


def mark_in_browser(page, download_dir, assessor: str, marks: dict[int, int]) -> dict:
    """Open the page, type the name, click each direction's mark, press Save; the saved marks."""
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    # The system's driver, so that selenium's manager does not go looking for one on the network.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(page.as_uri())
        driver.find_element(By.ID, "assessor").send_keys(assessor)
        for k, value in marks.items():
            driver.find_element(By.CSS_SELECTOR, f'input.mark[data-k="{k}"][value="{value}"]').click()
        progress = driver.find_element(By.ID, "progress").text
        driver.find_element(By.ID, "save").click()
        for _ in range(100):
            saved = list(download_dir.glob("mos-*.json"))
            if saved:
                break
            time.sleep(0.1)
        assert saved, "the browser saved no marks file"
        return {"progress": progress, "file": saved[0]}
    finally:
        driver.quit()


def test_marks_made_in_chromium_are_scored(tmp_path):
    cfg = presets.run_preset("tiny")[1].replace(train_steps=1, batch_size=4, M=3)
    run = load_run(discover("tiny", cfg, tmp_path / "run", grid_every=0, progress=False))
    page = build_mos_page(run, tmp_path, progress=False)
    got = mark_in_browser(page, tmp_path / "downloads", "ada", {0: 1, 1: 0, 2: 1, 3: 1})
    assert got["progress"].startswith("4 of 4 directions marked")
    saved = json.loads(got["file"].read_text())
    assert saved["assessor"] == "ada" and saved["marks"] == {"0": 1, "1": 0, "2": 1, "3": 1}
    result = score_marks([got["file"]])
    assert result["mos"] == pytest.approx(0.75) and result["num_assessors"] == 1
