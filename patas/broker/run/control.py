"""The private control channel of a run in progress (filled in by the live part)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from patas.analysis.status import ExperimentStatus


def ask_status(folder: Path) -> "ExperimentStatus | None":
    """The status the run holding the experiment folder's lock reports; None if no run holds it."""
    return None
