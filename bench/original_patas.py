"""The original patas (2.0.6), installed on first use into its own venv, to measure it beside ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ORIGINAL_VERSION = "2.0.6"


def original_patas(workdir: Path) -> Path | None:
    """patas 2.0.6's command, installed into `workdir` once; None (and a message) if that fails."""
    venv = workdir / f"venv-patas-{ORIGINAL_VERSION}"
    patas = venv / "bin" / "patas"
    if patas.exists():
        return patas
    print(f"installing patas=={ORIGINAL_VERSION} into {venv} (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # 2.0.6 imports yaml but does not declare PyYAML as a dependency.
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"patas=={ORIGINAL_VERSION}", "pyyaml"], check=True)
    except subprocess.CalledProcessError as error:
        print(f"  original patas {ORIGINAL_VERSION}: could not be installed ({error}); skipped")
        return None
    return patas
