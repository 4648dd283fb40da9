"""patas: run any program many times in parallel and analyse every run's output."""

from typing import Any

__version__ = "3.0.0.dev0"

# Public functions, imported on first use so that `import patas` stays cheap: name → module.
_LAZY = {
    "explore": "patas.broker.library",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'patas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
