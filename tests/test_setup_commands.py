"""The README's two set-up commands: CI runs exactly the test command, and both run from the
repository root on their own (no `cd` left behind for the next one)."""

from __future__ import annotations

import re

from tests.running import REPO


def setup_command(label: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"\*\*{label}\*\*.*?```sh\n(.+?)\n```", text, re.S)
    assert match, f"README.md has no '{label}' command"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == setup_command("Test it")


def test_the_try_command_leaves_the_shell_in_the_repository_root():
    command = setup_command("Try it")
    assert command.startswith("scripts/install && ")
    assert not re.search(r"(^|&&|;)\s*cd\s", command), "a cd would leave the next command in the wrong folder"
    assert "--workdir examples/basic_usage" in command
