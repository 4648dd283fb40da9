"""docs/benchmarks.md: each benchmark script owns one `## ` section and rewrites only that one."""

from __future__ import annotations

from pathlib import Path

DOCS_FILE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
DOCS_INTRO = "# Benchmarks\n\nMeasured costs of patas next to common tools; each section says how to reproduce it.\n"


def write_section(heading: str, section: str) -> None:
    """Replace the section starting at the line `heading` (or append it); others stay as they are."""
    text = DOCS_FILE.read_text() if DOCS_FILE.exists() else DOCS_INTRO
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    DOCS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_FILE.write_text(text)
