"""patas: run any program many times in parallel and analyse every run's output."""

__version__ = "3.0.0.dev0"
