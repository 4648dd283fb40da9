"""Every shell and Python example in README.md and docs/*.md runs as written.

How examples are marked:
- a fenced block tagged ```sh or ```python is an example: this test runs it;
- one that cannot run here (it needs SSH nodes, a pool, root or installs packages) says why in an
  HTML comment on the line before it: `<!-- not run: needs SSH nodes -->`;
- output, transcripts, folder layouts and file formats are tagged ```text, ```yaml or ```ini;
- anything else fails: an untagged fence, another tag, or an indented code block (whose kind
  cannot be told), so a new example is run unless someone decided, in writing, that it is not.

Each document's examples run in order, in one bash session (so `cd` carries over, as in a
terminal), in a fresh folder holding `examples/basic_usage` with the README's 3,000-task sweep
already done (see `prepare`: the README's own explore then finds nothing to run).
`patas` there is this checkout's, HOME is a fresh folder, and the checkout must not change.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from patas.common.config import experiment_from_flags
from patas.common.variables import arithmetic_variable, list_variable
from tests.analysis.labs import COMMAND, EXAMPLE, write_lab
from tests.running import ENV, REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNABLE = ("sh", "python")
SHOWN = ("text", "yaml", "ini")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
PYTHON_END = "PATAS_DOC_EXAMPLE_END"
DOCUMENT_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    """A code block of a Markdown document: where it starts, its tag, its text."""

    where: str  # README.md:27
    language: str | None  # None for an indented block
    code: str
    not_run: str | None  # the reason given in a `<!-- not run: ... -->` comment before it

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and self.not_run is None


def blocks(text: str, name: str) -> list[Block]:
    """The code blocks of a Markdown text, as CommonMark reads them (markdown-it, which rich needs)."""
    from markdown_it import MarkdownIt

    found = []
    tokens = MarkdownIt("commonmark").parse(text)
    for index, token in enumerate(tokens):
        if token.type not in ("fence", "code_block"):
            continue
        previous = tokens[index - 1] if index else None
        marker = NOT_RUN.match(previous.content.strip()) if previous is not None and previous.type == "html_block" else None
        language = (token.info.split() or [""])[0] if token.type == "fence" else None
        where = f"{name}:{token.map[0] + 1 if token.map else '?'}"
        found.append(Block(where, language, token.content, marker.group("reason") if marker else None))
    return found


def problems(block: Block) -> list[str]:
    """Why a block breaks the marking rules (empty when it follows them)."""
    if block.language is None:
        return [f"{block.where}: an indented code block; fence it as ```sh or ```python (run) or ```text (shown)"]
    if block.language not in (*RUNNABLE, *SHOWN):
        tags = ", ".join(RUNNABLE + SHOWN)
        return [f"{block.where}: a fence tagged '{block.language}'; use one of {tags}"]
    if block.not_run is not None and block.language not in RUNNABLE:
        return [f"{block.where}: a `not run` comment before a ```{block.language} block, which never runs"]
    return []


def script(examples: list[Block]) -> str:
    """One bash script running the examples in order; each announces itself on stderr first."""
    parts = ["set -e -o pipefail"]
    for block in examples:
        parts.append(f"echo '### example at {block.where}' >&2")
        if block.language == "python":
            assert PYTHON_END not in block.code
            parts.append(f"python3 - <<'{PYTHON_END}'\n{block.code}{PYTHON_END}")
        else:
            parts.append(block.code)
    return "\n".join(parts) + "\n"


def run_examples(examples: list[Block], folder: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the examples in `folder` with this checkout's `patas` first on the PATH."""
    bin_folder = home / "bin"
    bin_folder.mkdir(parents=True, exist_ok=True)
    shim = bin_folder / "patas"
    shim.write_text(f"#!/bin/sh\nexec '{sys.executable}' -m patas \"$@\"\n")
    shim.chmod(0o755)
    env = {**ENV, "HOME": str(home), "PATH": f"{bin_folder}{os.pathsep}{ENV['PATH']}", "MPLBACKEND": "Agg"}
    return subprocess.run(
        ["bash", "-c", script(examples)], cwd=folder, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=DOCUMENT_TIMEOUT_S, check=False,
    )  # fmt: skip


def document_blocks(path: Path) -> list[Block]:
    return blocks(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))


def checkout_state() -> str:
    """Every changed or untracked file of the checkout, with its size and time."""
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored=no"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    states = []
    for line in listed:
        path = REPO / line[3:].split(" -> ")[-1]
        stat = path.stat() if path.exists() else None
        states.append(f"{line} {stat.st_size if stat else '-'} {stat.st_mtime_ns if stat else '-'}")
    return "\n".join(states)


def prepare(folder: Path) -> None:
    """`folder`/examples/basic_usage holding the README's 3,000-task sweep, done.

    The tasks' outputs are the example's real outputs, but made in-process (seconds, where the
    real sweep takes minutes on this shared machine); the journal and definition are the ones
    explore writes, so the README's own `patas explore` then resumes and finds nothing to run.
    tests/analysis/test_readme_end_to_end.py runs a real (smaller) sweep of the same command.
    """
    example = folder / "examples" / "basic_usage"
    # The whole example folder (the program and its YAML files), as a checkout holds it.
    shutil.copytree(EXAMPLE.parent, example, ignore=shutil.ignore_patterns("pataslab", "__pycache__"))
    variables = [
        arithmetic_variable("neurons", 1, 51, 2, "--va"),
        list_variable("preprocessing", ["fast", "medium", "intense"], "--vl"),
        list_variable("activation", ["relu", "leaky_relu", "sigmoid", "tanh"], "--vl"),
    ]
    write_lab(example / "pataslab", experiment_from_flags("grid", [COMMAND], variables, 10, 3, str(example), None))


def test_every_block_is_marked():
    found = [problem for path in DOCUMENTS for block in document_blocks(path) for problem in problems(block)]
    assert not found, "\n".join(found)


def test_documents_have_examples_that_run():
    # The rules would be met by marking everything `not run`; the analysis guide at least runs.
    assert sum(b.runs for b in document_blocks(REPO / "docs" / "analysis.md")) >= 10
    assert sum(b.runs for b in document_blocks(REPO / "README.md")) >= 2


@pytest.mark.parametrize(
    "path", [p for p in DOCUMENTS if any(b.runs for b in document_blocks(p))], ids=lambda p: p.name
)  # fmt: skip
def test_the_examples_of_a_document_run(path: Path, tmp_path: Path):
    folder = tmp_path / "work"
    prepare(folder)
    before = checkout_state()
    done = run_examples([b for b in document_blocks(path) if b.runs], folder, tmp_path / "home")
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n(the last '### example at' line names the failing one)"
    assert checkout_state() == before, "an example changed files of the checkout"


# The rules and the runner themselves, on small documents: each fails when it should.

MARKED = """
```sh
echo ran > ran.txt
```

<!-- not run: needs SSH nodes -->
```sh
exit 9
```

```python
import pathlib
assert pathlib.Path("ran.txt").read_text() == "ran\\n"
```

```text
Error: shown, not run
```
"""


def test_marked_blocks_run_or_are_skipped_as_written(tmp_path):
    found = blocks(MARKED, "doc.md")
    assert [(b.where, b.language, b.not_run, b.runs) for b in found] == [
        ("doc.md:2", "sh", None, True),
        ("doc.md:7", "sh", "needs SSH nodes", False),
        ("doc.md:11", "python", None, True),
        ("doc.md:16", "text", None, False),
    ]
    assert not [p for b in found for p in problems(b)]
    assert run_examples([b for b in found if b.runs], tmp_path, tmp_path / "home").returncode == 0


@pytest.mark.parametrize(
    "document, problem",
    [
        ("text\n\n    patas explore --cmd x\n", "doc.md:3: an indented code block"),
        ("```\npatas query 'x'\n```\n", "doc.md:1: a fence tagged ''"),
        ("```bash\nls\n```\n", "doc.md:1: a fence tagged 'bash'"),
        ("<!-- not run: why -->\n```text\nx\n```\n", "doc.md:2: a `not run` comment before a ```text block"),
    ],
)  # fmt: skip
def test_unmarked_blocks_are_refused(document, problem):
    assert [p for b in blocks(document, "doc.md") for p in problems(b)][0].startswith(problem)


@pytest.mark.parametrize("code", ["```sh\nfalse\necho after\n```\n", "```sh\nfalse | cat\n```\n", "```python\nraise SystemExit(3)\n```\n"])
def test_a_failing_example_fails(tmp_path, code):
    done = run_examples(blocks(code, "doc.md"), tmp_path, tmp_path / "home")
    assert done.returncode != 0 and "### example at doc.md:1" in done.stderr and "after" not in done.stdout


def test_patas_in_examples_is_this_checkout(tmp_path):
    code = "```sh\npatas --version\npython3 -c 'import patas; print(patas.__file__)'\n```\n"
    done = run_examples(blocks(code, "doc.md"), tmp_path, tmp_path / "home")
    assert done.returncode == 0 and str(REPO / "patas" / "__init__.py") in done.stdout, done.stderr
