"""patas: run any program many times in parallel and analyse every run's output.

The public functions are attributes of this package, imported only when first used, so that
`import patas` (and `patas --help`) stays cheap and never loads pandas, duckdb or seaborn:

    patas.parse(...)     a parsed table as a DataFrame        (patas.analysis.parse.parse)
    patas.query(...)     SQL over parsed tables, a DataFrame  (patas.analysis.query.query)
    patas.summary(...)   a metric per configuration with 95% intervals (patas.analysis.summary.summarize)
    patas.draw           heatmap, categories, lines → Figure  (the module patas.analysis.draw)
    patas.explore(...)   run a sweep, its counts              (patas.broker.run.library.explore)
    patas.SlurmOptions   explore(slurm=...): agents as Slurm jobs (patas.broker.slurm.options)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "3.0.0.dev0"

# public name → (module, attribute in it; None for the module itself). One line per export.
EXPORTS: dict[str, tuple[str, str | None]] = {
    "parse": ("patas.analysis.parse", "parse"),
    "query": ("patas.analysis.query", "query"),
    "summary": ("patas.analysis.summary", "summarize"),
    "draw": ("patas.analysis.draw", None),
    "explore": ("patas.broker.run.library", "explore"),
    "SlurmOptions": ("patas.broker.slurm.options", "SlurmOptions"),
}

__all__ = [*EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'patas' has no attribute '{name}'")
    module_name, attribute = EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later uses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
