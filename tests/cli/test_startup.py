"""What a plain local `patas explore` loads on its way: only what the run uses (issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.running import ENV, done_ids

# Modules a 1-task local grid run with -q never needs: the live bar (rich), the status types and
# the control channel's messages (nobody asks), shipping, Slurm, SSH, searches, task filters,
# --detach, asyncio (pyzmq's authenticator thread), PyYAML (a new definition is written by
# patas.common.yaml_writer), OpenSSL through hashlib (task keys take BLAKE2b from
# patas.common.digests), and the analysis stack.
NOT_FOR_A_PLAIN_RUN = (
    "rich", "asyncio", "zmq.auth", "patas.analysis.status", "patas.broker.ship.code",
    "patas.broker.ship.transfer", "patas.broker.slurm.options", "patas.broker.slurm.session",
    "patas.broker.ssh.session", "paramiko", "optuna", "patas.common.search", "patas.broker.run.study",
    "patas.broker.run.task_filter", "patas.cli.detach", "patas.cli.ship_progress",
    "patas.broker.run.control_messages", "yaml", "hashlib", "_hashlib", "numpy", "pandas", "duckdb",
)  # fmt: skip

# Runs the CLI as `python -m patas` does, and writes the names of the modules it imported as the
# process ends.
_RUN_AND_LIST_MODULES = """
import atexit, json, runpy, sys
atexit.register(lambda: open(OUT, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["patas", *sys.argv[2:]]
runpy.run_module("patas", run_name="__main__")
"""


def _modules_of_a_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    listing = tmp_path / "modules.json"
    code = _RUN_AND_LIST_MODULES.replace("OUT", repr(str(listing)))
    done = subprocess.run(
        [sys.executable, "-c", code, "--", "explore", *args], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120
    )
    return done, set(json.loads(listing.read_text()))


def test_a_quiet_local_grid_run_imports_only_what_it_uses(tmp_path):
    done, modules = _modules_of_a_run(tmp_path, "--cmd", "echo {i}", "--va", "i", "0", "1", "1", "--node", "localhost", "2", "-y", "-q")
    assert done.returncode == 0, done.stderr
    assert done_ids(tmp_path / "pataslab" / "grid") == [0]
    assert "Finished: 1 done, 0 failed" in done.stderr
    loaded = sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in NOT_FOR_A_PLAIN_RUN))
    assert loaded == []
    # What the run does use is there: the coordinator and its control socket (for patas status).
    assert {"patas.broker.run.coordinator", "patas.broker.run.control", "patas.broker.run.channel", "zmq"} <= modules

