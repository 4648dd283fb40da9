"""`patas dashboard` as a user starts it: its URL, a port in use, another address, and a start-up
that costs `patas --help` nothing."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.dashboard.served import http_get, start_dashboard
from tests.running import ENV, patas


def test_port_0_takes_a_free_port_and_the_url_says_which(tmp_path):
    (tmp_path / "pataslab").mkdir()
    served = start_dashboard(tmp_path)
    try:
        port = int(served.base.rsplit(":", 1)[1])
        assert served.base == f"http://127.0.0.1:{port}" and port > 0
        assert len(served.token) >= 40  # secrets.token_urlsafe(32)
        assert http_get(served.url)[0] == 200
    finally:
        served.stop()
    other = start_dashboard(tmp_path)
    try:
        assert other.token != served.token  # a new token every start
    finally:
        other.stop()


def test_a_port_in_use_gives_one_line_and_exit_1(tmp_path):
    (tmp_path / "pataslab").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = patas("dashboard", "--port", str(port), cwd=tmp_path, timeout=60)
    assert run.code == 1
    assert run.stderr == f"Error: --port {port}: 127.0.0.1:{port} is in use already (give another --port, or --port 0 for a free one)\n"
    assert run.stdout == ""


def test_another_address_than_loopback_is_served_with_a_warning(tmp_path):
    (tmp_path / "pataslab").mkdir()
    # 127.0.0.2 is loopback too: no warning. The wildcard address is what --bind for other
    # machines means; the test reaches it on loopback only.
    for host, warned in (("127.0.0.2", False), ("0.0.0.0", True)):
        served = start_dashboard(tmp_path, "--bind", host)
        try:
            assert served.base.startswith(f"http://{host}:")
            port = served.base.rsplit(":", 1)[1]
            reach = "127.0.0.1" if warned else host
            assert http_get(f"http://{reach}:{port}/?token={served.token}")[0] == 200
            assert http_get(f"http://{reach}:{port}/")[0] == 403
        finally:
            stderr = served.stop()
        assert ("Warning: --bind 0.0.0.0: other machines can reach the dashboard;" in stderr) == warned, stderr


def test_help_imports_neither_the_server_nor_the_analysis_libraries(tmp_path):
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom patas.cli.app import cli\n"
        "for args in (['--help'], ['dashboard', '--help']): assert CliRunner().invoke(cli, args).exit_code == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'anyio', 'pandas', 'duckdb', 'zmq'}))\n"
        "print('patas.dashboard' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split("\n")[:2] == ["[]", "False"], done.stderr
