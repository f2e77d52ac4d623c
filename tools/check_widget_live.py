"""Label real Hopper clips in the labelling widget in a live Jupyter, in headless Chromium, across a kernel restart.

    .venv/bin/python tools/check_widget_live.py     # also run by `make test` (tests/test_jupyter_live.py)

What it does, as a reader would: starts a Jupyter server on 127.0.0.1, opens a notebook that records
Hopper clips, renders them (lmlib.preferences.agent.add_frames) and shows lmlib.ui.labeling.LabelingWidget;
runs the cell, clicks "Left is better" and types "d" in the key box; checks the labels file has the
two answers; restarts the kernel, runs the cell again and checks the widget resumes at 2 / 4; answers
once more; checks three answers in the file. Screenshots go to $TMPDIR/widget_live_*.png. Exits
non-zero (and says what failed) on any failure.

Needs Debian's chromium and chromium-driver, selenium and JupyterLab (tools/setup.sh --browser installs them).

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CELL = '''import os
os.environ.setdefault("MUJOCO_GL", "egl")
import numpy as np
from lmlib.ui.labeling import LabelingWidget
from lmlib.preferences import sample_pairs
from lmlib.preferences.agent import add_frames, collect_clips
clips = collect_clips(None, "Hopper-v5", episodes=1, segment_length=20, seed=7,
                      env_kwargs={"terminate_when_unhealthy": False})
pairs = sample_pairs(clips, 4, np.random.default_rng(0))
add_frames(pairs, width=160, height=160, every=4)
widget = LabelingWidget(pairs, "labels.jsonl", width=200)
widget'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    work = Path(tempfile.mkdtemp(prefix="widget_live_"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, work / "label.ipynb")
    port, token = _free_port(), "lmbook"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.disable_check_xsrf=True",
         "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"),
        env=dict(os.environ, MUJOCO_GL="egl", PYTHONPATH=str(ROOT)))
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("LMBOOK_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1200",
                f"--user-data-dir={work / 'chrome'}"):
        opts.add_argument(arg)
    driver = None
    labels = work / "labels.jsonl"
    shots = Path(tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 120  # the server takes seconds to start (longer on a busy machine)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Jupyter server did not start (is JupyterLab installed? tools/setup.sh installs it)") from None
                time.sleep(0.5)
        driver = webdriver.Chrome(service=webdriver.ChromeService(
            os.environ.get("LMBOOK_CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
        # JupyterLab re-renders outputs while we read them: a stale element just means 'look again'
        wait = WebDriverWait(driver, 240, ignored_exceptions=(StaleElementReferenceException,))
        driver.get(f"http://127.0.0.1:{port}/lab/tree/label.ipynb?token={token}")

        def run_cell() -> None:
            cell = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".jp-Cell .jp-InputArea-editor"))
            cell.click()
            webdriver.ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()

        def buttons() -> dict:
            return {b.text: b for b in driver.find_elements(By.CSS_SELECTOR, "button.jupyter-button")}

        def progress() -> str:
            return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".widget-html-content b"))

        def cell_error() -> str:
            """The text of an error the cell printed (a traceback), or '' (so a broken cell fails at once)."""
            return driver.execute_script(
                "return [...document.querySelectorAll(\".jp-OutputArea-output[data-mime-type='application/"
                "vnd.jupyter.stderr']\")].map(e => e.textContent).filter(t => t.includes('Error')).join('\\n')")

        def until_widget(resumed_at: str | None = None) -> None:
            def ready(d) -> bool:
                err = cell_error()
                if err:
                    raise RuntimeError(f"the cell failed:\n{err[-3000:]}")
                return "Left is better (a)" in buttons() and (resumed_at is None or resumed_at in progress())
            wait.until(ready)

        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook"))
        time.sleep(3)
        run_cell()
        until_widget()
        videos = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea video")
        print(f"widget shown: {len(videos)} videos, progress {progress()!r}")
        assert len(videos) == 2, f"expected two clips on screen, found {len(videos)} video elements"
        assert "0 / 4" in progress(), progress()
        driver.save_screenshot(str(shots / "widget_live_1.png"))
        buttons()["Left is better (a)"].click()
        wait.until(lambda d: "1 / 4" in progress())
        box = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea input[type=text]")
        box.click()
        box.send_keys("d")
        wait.until(lambda d: "2 / 4" in progress())
        lines = [json.loads(x) for x in labels.read_text().splitlines()]
        print("labels file after a click and a key:", [x["choice"] for x in lines])
        assert [x["choice"] for x in lines] == ["left", "right"], lines

        # restart the kernel (JupyterLab command via its menu: Kernel > Restart Kernel...), then run the cell again
        driver.find_element(By.XPATH, "//li[contains(@class,'lm-MenuBar-item')]//div[text()='Kernel']").click()
        wait.until(lambda d: d.find_elements(By.XPATH, "//li[@data-command='kernelmenu:restart']"))
        driver.find_element(By.XPATH, "//li[@data-command='kernelmenu:restart']").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Dialog button.jp-mod-accept"))
        driver.find_element(By.CSS_SELECTOR, ".jp-Dialog button.jp-mod-accept").click()
        time.sleep(5)
        run_cell()
        until_widget(resumed_at="2 / 4")
        print(f"after the kernel restart the widget resumes at {progress()!r}")
        driver.save_screenshot(str(shots / "widget_live_2.png"))
        buttons()["Equally good (s)"].click()
        wait.until(lambda d: "3 / 4" in progress())
        lines = [json.loads(x) for x in labels.read_text().splitlines()]
        assert [x["choice"] for x in lines] == ["left", "right", "equal"], lines
        print("labels file after the restart:", [x["choice"] for x in lines])
        print(f"OK: the widget labelled real clips in a live JupyterLab and survived a kernel restart "
              f"(screenshots {shots}/widget_live_1.png, widget_live_2.png)")
        return 0
    except Exception as e:  # noqa: BLE001  (a check script: say what failed)
        if driver is not None:
            driver.save_screenshot(str(shots / "widget_live_failed.png"))
        print(f"FAILED: {type(e).__name__}: {e}\nserver log: {work / 'server.log'}; screenshot "
              f"{shots / 'widget_live_failed.png'}", file=sys.stderr)
        return 1
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
