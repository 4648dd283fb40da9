"""The `patas` group itself: unknown commands, and how a command ends its process."""

import subprocess
import sys
from typing import IO

from tests.running import ENV, patas, processes_with


def test_a_mistyped_command_suggests_the_right_one(tmp_path):
    run = patas("querry", "select 1", cwd=tmp_path)
    assert run.code == 2
    assert run.stderr.splitlines()[-1] == "Error: No such command 'querry' (did you mean 'query'?)."


def test_an_unknown_command_without_a_close_one(tmp_path):
    run = patas("xyzzy", cwd=tmp_path)
    assert run.code == 2
    assert run.stderr.splitlines()[-1] == "Error: No such command 'xyzzy'."


def test_help_of_the_group_and_of_summary_import_nothing_heavy(tmp_path):
    import subprocess
    import sys

    from tests.running import ENV

    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom patas.cli.app import cli\n"
        "for args in (['--help'], ['summary', '--help']): assert CliRunner().invoke(cli, args).exit_code == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'duckdb', 'seaborn', 'zmq', 'matplotlib', 'scipy'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]", done.stderr


def test_a_mistyped_subcommand_suggests_the_right_one(tmp_path):
    for args, expected in ((["draw", "heatmp"], "heatmap"), (["pool", "stauts"], "status")):
        run = patas(*args, cwd=tmp_path)
        assert run.code == 2
        assert run.stderr.splitlines()[-1] == f"Error: No such command '{args[1]}' (did you mean '{expected}'?).", run.stderr


def test_explore_collects_no_garbage_while_it_starts_and_as_usual_once_its_run_starts(tmp_path):
    import subprocess
    import sys

    from tests.running import ENV

    # What the collector's state is when the run starts (the reporter is entered) and at exit.
    code = (
        "import atexit, gc, sys\nimport patas.cli.progress as progress\n"
        "enter = progress.RunReporter.__enter__\nstates = []\n"
        "def entered(self):\n    states.append((gc.isenabled(), gc.get_freeze_count() > 0))\n    return enter(self)\n"
        "progress.RunReporter.__enter__ = entered\n"
        "atexit.register(lambda: print(states, gc.isenabled()))\n"
        "sys.argv = ['patas', 'explore', '--cmd', 'echo {i}', '--vl', 'i', '1', '-y', '-q']\n"
        "from patas.cli.main import main\nmain()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(True, True)] True", done.stdout + done.stderr
    assert (tmp_path / "pataslab/grid/0/stdout").read_text() == "1\n"


# Runs the CLI with what an embedding program may leave behind: a function registered to run at
# exit before the CLI starts, which says who calls it (`_end`, or the interpreter's teardown,
# from no Python frame), and (with "thread" as the first argument) a thread that is not a daemon
# and still runs.
_EMBEDDED_CLI = """
import atexit, sys, threading, time
def at_exit():
    caller = sys._getframe(1).f_code.co_name if sys._getframe().f_back else "the teardown"
    print(f"ran at exit, called by {caller}", flush=True)
atexit.register(at_exit)
if sys.argv.pop(1) == "thread":
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread ended", flush=True))).start()
from patas.cli.main import main
main()
"""


def _embedded(tmp_path, thread: str, *args: str):
    return _python(tmp_path, "-c", _EMBEDDED_CLI, thread, *args)


def _python(tmp_path, *args: str, stdout: int | IO[str] = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as usual
    return subprocess.run([sys.executable, *args], env=env, text=True, cwd=tmp_path, timeout=60, stdout=stdout, stderr=subprocess.PIPE)


def test_a_command_ends_its_process_without_the_teardown_but_after_what_was_registered_to_run_at_exit(tmp_path):
    done = _embedded(tmp_path, "-", "query", "select 41 + 1 as answer")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["answer", "42", "ran at exit, called by _end"]

    refused = _embedded(tmp_path, "-", "query", "select nothing from nowhere")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: "), refused.stderr
    assert refused.stdout.splitlines() == ["ran at exit, called by _end"]


def test_a_thread_still_running_when_the_command_ends_is_waited_for_as_python_does(tmp_path):
    done = _embedded(tmp_path, "thread", "query", "select 42 as answer")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["answer", "42", "thread ended", "ran at exit, called by the teardown"]


def test_output_to_a_full_disk_is_one_line_and_status_1(tmp_path):
    with open("/dev/full", "w") as full:
        done = _python(tmp_path, "-m", "patas", "query", "select 42 as answer", stdout=full)
    assert done.returncode == 1
    assert done.stderr == "Error: No space left on device (--debug shows where)\n"


def test_output_that_cannot_be_written_as_the_process_ends_is_reported(tmp_path):
    # Output still buffered when the command ends (here an exit function's) is written by `_end`.
    late = "import atexit, sys\natexit.register(lambda: sys.stdout.write('a late line'))\nfrom patas.cli.main import main\nmain()\n"
    with open("/dev/full", "w") as full:
        done = _python(tmp_path, "-c", late, "explore", "--cmd", "echo {i}", "--vl", "i", "7", "-y", "-q", stdout=full)
    assert (tmp_path / "pataslab/grid/0/stdout").read_text() == "7\n"  # the command itself succeeded
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "Error: the output is incomplete: No space left on device", done.stderr


def test_an_error_that_echoes_a_value_with_line_breaks_is_still_one_line(tmp_path):
    run = patas("explore", "--cmd", "echo {x}", "--vl", "x", "a\nb\r", "a\nb\r", "-y", cwd=tmp_path)
    assert run.code == 1
    assert run.stderr == "Error: --vl x: variable 'x' lists the value 'a\\nb\\r' twice (give each value once; --repeat runs a combination several times)\n"
    assert not (tmp_path / "pataslab").exists()


# Ctrl-C while Python imports click, before click (or patas) can catch it: an import that raises
# KeyboardInterrupt, as the signal does wherever it lands.
_INTERRUPTED_IMPORT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "click":
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
from patas.cli.main import main
main()
"""


def test_ctrl_c_before_click_is_loaded_is_one_line_and_status_130(tmp_path):
    done = _python(tmp_path, "-c", _INTERRUPTED_IMPORT, "explore", "--cmd", "echo {i}", "--vl", "i", "1", "-y")
    assert (done.returncode, done.stderr) == (130, "Interrupted.\n")
    assert not (tmp_path / "pataslab").exists()
    assert processes_with("patas.agent", cwd=tmp_path) == []  # the agent started early is ended
