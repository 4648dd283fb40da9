"""Fixtures: a small lab of the README's experiment, and a way to run `patas` as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .labs import REPO, small_grid, write_lab

# The README's parse patterns (see readme.PARSE for the command itself).
README_PATTERNS = {
    "train_time": r"Time to train \(ms\): (@float@)",
    "test_time": r"Time to test \(ms\):  (@float@)",
    "train_acc": r"Train accuracy:     (@float@)",
    "test_acc": r"Test accuracy:      (@float@)",
    "loss": r"Final Loss:         (@float@)",
}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def run_patas(*args: str, cwd: Path) -> Run:
    """`python -m patas ARGS` in `cwd`: exit code and both outputs."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "patas", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def invoke_patas(*args: str, cwd: Path) -> Run:
    """`patas ARGS` in this process (no interpreter start-up), for tests of what a command prints."""
    from click.testing import CliRunner

    from patas.cli.app import cli

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, list(args))
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def parsed_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding pataslab/grid (120 done tasks) already parsed with the README's patterns."""
    from patas.analysis.parse import parse_experiment

    root = tmp_path_factory.mktemp("workdir")
    lab = write_lab(root / "pataslab", small_grid())
    parse_experiment(lab.path, README_PATTERNS, output=lab.path / "grid.csv")
    return root


@pytest.fixture
def grid_lab(tmp_path: Path):
    """A fresh, unparsed lab of 120 done tasks under tmp_path/pataslab/grid."""
    return write_lab(tmp_path / "pataslab", small_grid())
