"""Every command documents itself: help with an example, and docs/cli.md made from that help."""

import subprocess
import sys

import pytest

from patas.cli.reference import commands, help_text
from tests.running import ENV, REPO


@pytest.mark.parametrize("name, command", commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_with_an_example(name, command):
    text = help_text(name, command)
    assert "Example" in text, f"{name} --help has no example"
    assert (command.help or "").strip(), f"{name} has no description"


def test_the_cli_reference_is_up_to_date():
    made = subprocess.run(
        [sys.executable, "-m", "patas.cli.reference"], env={**ENV, "COLUMNS": "100"}, capture_output=True, text=True, check=True
    ).stdout
    assert (REPO / "docs" / "cli.md").read_text() == made, "run: COLUMNS=100 python -m patas.cli.reference > docs/cli.md"
