"""What is shipped to nodes: the agent's code, and pyzmq/msgpack that fit the node's Python."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import pytest

from patas.broker.ssh.agent_payload import LOCAL_PLATFORM, AGENT_MODULES, MissingDependencies, Platform, _payload_for


def test_a_node_like_this_machine_gets_our_agent_and_our_pyzmq():
    payload = _payload_for(LOCAL_PLATFORM, False)
    names = {name for name, _ in payload.files}
    assert {f"patas/{module}" for module in AGENT_MODULES} <= names
    assert any(name.startswith("zmq/") and LOCAL_PLATFORM.abi in name for name in names)
    with tarfile.open(fileobj=io.BytesIO(payload.archive)) as archive:
        assert set(archive.getnames()) == names
    assert _payload_for(LOCAL_PLATFORM, True).files == [f for f in payload.files if f[0].startswith("patas/")]


def test_a_node_with_another_python_gets_the_pyzmq_wheel_built_for_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _payload_for.cache_clear()
    other = Platform("cpython-310-x86_64-linux-gnu", "Linux", "x86_64", "glibc 2.36")
    try:
        payload = _payload_for(other, False)
    except MissingDependencies as error:
        if "could not fetch" in str(error):
            pytest.skip(f"no package index reachable: {error}")
        raise
    names = {name for name, _ in payload.files}
    assert "zmq/backend/cython/_zmq.cpython-310-x86_64-linux-gnu.so" in names
    assert (tmp_path / "patas" / "wheels").is_dir()  # fetched once, kept for the next run


@pytest.mark.parametrize(
    "platform, reason",
    [
        (Platform("cpython-311-x86_64-linux-musl", "Linux", "x86_64", ""), "is not Linux with glibc"),
        (Platform("cpython-311-darwin", "Darwin", "arm64", ""), "is not Linux with glibc"),
        (Platform("pypy39-pp73", "Linux", "x86_64", "glibc 2.36"), "is not CPython"),
    ],
)
def test_a_node_patas_cannot_equip_is_told_how_to_fix_it(platform, reason):
    with pytest.raises(MissingDependencies) as error:
        _payload_for(platform, False)
    assert reason in str(error.value)
    assert str(error.value).endswith("install them on the node: python3 -m pip install --user pyzmq msgpack")


def test_the_shipped_modules_are_all_an_agent_imports(tmp_path):
    """An agent started from the payload alone (as on a node) finds every module it imports."""
    for name, source in _payload_for(LOCAL_PLATFORM, True).files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(source.read_bytes())
    started = subprocess.run(
        [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import patas.agent.__main__", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
