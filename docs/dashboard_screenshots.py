"""Make the screenshots of docs/dashboard.md with the browser the tests use (headless Chromium).

    PYTHONPATH=. python3 docs/dashboard_screenshots.py

Runs two real sweeps in a temporary folder: `grid`, finished and parsed (one configuration
fails on purpose), and `training`, still running (its tasks print epochs; the later ones then wait),
serves them with `patas dashboard`, and saves docs/img/dashboard-*.png. Where this patas can
search (`--type tpe`), also a 12-trial search of examples/basic_usage for dashboard-search.png.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from tests.dashboard.served import browser_or_skip, start_dashboard, text_of, wait_until
from tests.running import patas, start_patas

IMAGES = Path(__file__).resolve().parent / "img"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples/basic_usage/main.py"
GRID = (
    "python3 -c 'import random, sys\n"
    "lr, layers = {lr}, {layers}\n"
    "sys.exit(1) if layers == 4 and lr == 0.1 else None\n"
    "print(\"acc\", 0.6 + 0.08 * layers - abs(lr - 0.01) + random.gauss(0, 0.02))'"
)
# Tasks 0 to 3 finish after 4 epochs (so the lab page has a rate and an ETA); the others then wait.
TRAINING = (
    "for e in 1 2 3 4; do echo \"epoch $e loss 0.{seed}$((9 - e))\"; sleep 0.5; done; "
    "[ {seed} -le 4 ] || while [ ! -e GO ]; do sleep 0.1; done"
)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        grid = ("--name", "grid", "--cmd", GRID, "--vl", "lr", "0.001", "0.01", "0.1", "--vl", "layers", "1", "2", "3", "4")
        patas("explore", *grid, "--repeat", "4", "--max-tries", "1", "-y", cwd=folder)
        patas("parse", "-e", "pataslab/grid", "-p", "acc", "acc (@float@)", cwd=folder)
        command = TRAINING.replace("GO", str(folder / "go"))
        searched = patas(
            "explore", "--name", "search", "--type", "tpe", "--trials", "12", "--seed", "1", "-j", "2", "-y",
            "--cmd", f"{EXAMPLE} {{neurons}} {{activation}} {{preprocessing}}", "--vi", "neurons", "1", "50",
            "--vl", "activation", "relu", "leaky_relu", "sigmoid", "tanh", "--vl", "preprocessing", "fast", "medium", "intense",
            "--objective", "max", "test_acc", "Test accuracy: +(@float@)", cwd=folder,
        ).code == 0  # fmt: skip
        training = start_patas("explore", "--name", "training", "--cmd", command, "--va", "seed", "1", "9", "1", "-y", cwd=folder)
        browser = browser_or_skip()
        served = start_dashboard(folder)
        try:
            browser.set_window_size(1280, 900)
            browser.get(served.url)
            wait_until(lambda: "epoch 4" in text_of(browser, "#running tbody"), 60, "the waiting tasks")
            browser.save_screenshot(str(IMAGES / "dashboard-lab.png"))
            browser.set_window_size(1280, 1500)
            browser.get(served.base + "/experiments/grid")
            wait_until(lambda: text_of(browser, "#summary tr.best"), 60, "the summary")
            time.sleep(1)
            browser.save_screenshot(str(IMAGES / "dashboard-experiment.png"))
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import Select

            Select(browser.find_element(By.ID, "kind")).select_by_value("heatmap")
            time.sleep(2)
            browser.find_element(By.ID, "results-section").screenshot(str(IMAGES / "dashboard-heatmap.png"))
            if searched:
                browser.get(served.base + "/experiments/search")
                wait_until(lambda: text_of(browser, "#summary tr.best"), 60, "the search's summary")
                Select(browser.find_element(By.ID, "kind")).select_by_value("parallel")
                time.sleep(2)
                browser.find_element(By.ID, "results-section").screenshot(str(IMAGES / "dashboard-search.png"))
            browser.set_window_size(1280, 700)
            browser.get(served.base + "/experiments/training/tasks/5")
            wait_until(lambda: "epoch 4" in text_of(browser, "#output"), 60, "the task's output")
            browser.save_screenshot(str(IMAGES / "dashboard-task.png"))
        finally:
            browser.quit()
            served.stop()
            (folder / "go").touch()
            try:
                training.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                training.kill()
                training.communicate()


if __name__ == "__main__":
    main()
