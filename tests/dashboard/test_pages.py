"""The dashboard's pages in a real headless browser, on real sweeps: the lab page follows a sweep
as it runs, a task's page shows what the task prints within two seconds, and the charts draw."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.dashboard.served import PAGE_TIMEOUT_S, SWEEP_TIMEOUT_S, gate, start_dashboard, text_of, wait_until
from tests.running import patas

DEADLINE_S = 2.0  # how soon a line a task printed must show on its page


@pytest.fixture
def dashboards():
    started = []

    def start(folder: Path):
        served = start_dashboard(folder)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def test_the_lab_page_shows_a_running_sweeps_done_count_increasing(tmp_path, sweep, dashboards, browser):
    # Task t finishes when the test creates file `t` (or `go`, which ends them all).
    running = sweep("--cmd", f"while [ ! -e {tmp_path}/{{t}} ] && [ ! -e {tmp_path}/go ]; do sleep 0.02; done; echo finished {{t}}",
                    "--vl", "t", "a", "b", "c", "d")  # fmt: skip
    served = dashboards(tmp_path)
    browser.get(served.url)
    done = "#experiments tr[data-experiment=grid] td.done"
    wait_until(lambda: text_of(browser, done) == "0", PAGE_TIMEOUT_S, "the sweep on the lab page")
    row = "#experiments tr[data-experiment=grid]"
    wait_until(lambda: text_of(browser, f"{row} td.running") not in ("", "0"), PAGE_TIMEOUT_S, "tasks running on the page")
    assert int(text_of(browser, f"{row} td.running")) + int(text_of(browser, f"{row} td.pending")) == 4
    for count, task in enumerate("abc", 1):
        (tmp_path / task).touch()
        wait_until(lambda: text_of(browser, done) == str(count), PAGE_TIMEOUT_S, f"{count} done on the page")
        assert running.poll() is None  # the page moved while the sweep still ran
    (tmp_path / "d").touch()
    assert running.wait(SWEEP_TIMEOUT_S) == 0
    wait_until(lambda: text_of(browser, done) == "4", PAGE_TIMEOUT_S, "4 done on the page")
    wait_until(lambda: text_of(browser, "#live") == "no run in progress", PAGE_TIMEOUT_S, "the run's end")


def test_a_tasks_page_shows_a_line_the_task_printed_within_two_seconds(tmp_path, sweep, dashboards, browser):
    running = sweep("--cmd", f"echo 'epoch 1'; {gate(tmp_path, 'next')}; echo 'epoch 2 loss 0.25'; {gate(tmp_path, 'go')}")
    attempt = tmp_path / "pataslab/grid/0/attempt-1.stdout"
    wait_until(lambda: attempt.exists() and attempt.read_bytes() == b"epoch 1\n", SWEEP_TIMEOUT_S, "the task's first line")
    served = dashboards(tmp_path)
    browser.get(served.url)
    browser.get(served.base + "/experiments/grid/tasks/0")
    wait_until(lambda: text_of(browser, "#output") == "epoch 1", PAGE_TIMEOUT_S, "the line printed before the page opened")
    assert text_of(browser, "#following") == "following"
    (tmp_path / "next").touch()
    printed = time.monotonic()
    wait_until(lambda: "epoch 2 loss 0.25" in text_of(browser, "#output"), DEADLINE_S, "the new line on the page")
    assert time.monotonic() - printed < DEADLINE_S
    (tmp_path / "go").touch()
    assert running.wait(SWEEP_TIMEOUT_S) == 0
    wait_until(lambda: text_of(browser, "#following") == "done", PAGE_TIMEOUT_S, "the task's end on its page")
    assert text_of(browser, "#output") == "epoch 1\nepoch 2 loss 0.25"


def marks(browser, selector: str) -> int:
    """How many drawn marks (SVG paths) the chart has under `selector`."""
    from selenium.webdriver.common.by import By

    return len(browser.find_elements(By.CSS_SELECTOR, f"#chart svg {selector} path"))


def choose(browser, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, select_id)).select_by_value(value)


def parsed_grid(folder: Path) -> None:
    """A real 3 x 2 grid, 3 repeats, whose accuracy grows with both parameters, parsed."""
    command = "python3 -c 'import random; print(\"acc\", {a} * 0.1 + {b} * 0.01 + random.random() * 0.01)'"
    assert patas("explore", "--cmd", command, "--va", "a", "1", "4", "1", "--vl", "b", "1", "2", "--repeat", "3", "-y", cwd=folder).code == 0
    assert patas("parse", "-e", "pataslab/grid", "-p", "acc", "acc (@float@)", cwd=folder).code == 0


def test_the_experiment_page_draws_lines_with_bands_and_a_heatmap_and_marks_the_best(tmp_path, dashboards, browser):
    parsed_grid(tmp_path)
    served = dashboards(tmp_path)
    browser.get(served.url)
    browser.get(served.base + "/experiments/grid")
    # Lines: one line and one band per value of b (the second parameter, chosen for colour).
    wait_until(lambda: marks(browser, ".mark-line") == 2 and marks(browser, ".mark-area") == 2, PAGE_TIMEOUT_S, "the lines")
    wait_until(lambda: text_of(browser, "#summary tr.best"), PAGE_TIMEOUT_S, "the summary")
    assert text_of(browser, "#summary tr.best").split()[:3] == ["3", "2", "3"]  # a=3, b=2, n=3: the highest
    choose(browser, "kind", "heatmap")
    wait_until(lambda: marks(browser, ".mark-rect") >= 6, PAGE_TIMEOUT_S, "the heatmap's cells")
    # The tasks table: sorted by out_acc, descending, on two clicks of its header.
    from selenium.webdriver.common.by import By

    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 18, PAGE_TIMEOUT_S, "the tasks")
    for _ in range(2):
        browser.find_element(By.CSS_SELECTOR, "#tasks th[data-column=out_acc]").click()
    first = browser.find_element(By.CSS_SELECTOR, "#tasks tbody tr").get_attribute("data-task-id")
    assert int(first) in range(15, 18)  # a=3, b=2: tasks 15 to 17
    choose(browser, "state-filter", "failed")
    assert browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr") == []


def test_a_search_experiment_gets_best_so_far_and_parallel_coordinates(tmp_path, monkeypatch, browser):
    """A real grid sweep stands in for a search: its recorded definition is given a `search` key
    here (as a search run records it), read by the dashboard served in this process."""
    from patas.common.lab import ExperimentLab
    from patas.dashboard.server import dashboard_server, listen

    parsed_grid(tmp_path)
    read_definition = ExperimentLab.read_definition
    search = {"type": "random", "objective": {"direction": "max", "name": "acc", "pattern": "acc (@float@)"}}
    monkeypatch.setattr(ExperimentLab, "read_definition", lambda self: {**(read_definition(self) or {}), "search": search})
    listening = listen("127.0.0.1", 0)
    server = dashboard_server(tmp_path / "pataslab", "t0ken")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening.socket]}, daemon=True)
    thread.start()
    try:
        browser.get(listening.url("t0ken"))
        browser.get(f"http://127.0.0.1:{listening.port}/experiments/grid")
        # Best so far is the first chart of a search: every trial's point and the best's line.
        wait_until(lambda: marks(browser, ".mark-symbol") == 18 and marks(browser, ".mark-line") == 1, PAGE_TIMEOUT_S, "best so far")
        choose(browser, "kind", "parallel")
        wait_until(lambda: marks(browser, ".mark-line") == 18, PAGE_TIMEOUT_S, "a line per trial")
    finally:
        server.should_exit = True
        thread.join(10)
