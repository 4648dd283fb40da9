"""`patas`: the entry point. It turns library errors into one line and an exit status.

Before anything else, `patas explore` starts a local agent's process: its Python start and imports
(~0.1 s) then overlap this process's own, click's included (see patas.broker.local.early_start).
It also turns the cyclic garbage collector off until its run starts (`collect_from_now_on`):
its start-up makes some 100,000 objects and frees almost none, and the collector's ~40 passes
over them cost ~10-30 ms. A command that ends by returning or by `sys.exit` then ends the process
without the interpreter's teardown (`_end`).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from contextlib import AbstractContextManager
from typing import NoReturn

from patas.common.errors import EXIT_INTERRUPTED


def main() -> NoReturn:
    """Run the CLI, turning library errors into one line on stderr and an exit status, and end
    the process."""
    try:
        with _agent_ahead(sys.argv[1:]):
            _main()
        status: object = 0
    except SystemExit as end:
        status = end.code
    except KeyboardInterrupt:  # Ctrl-C before `_main` catches it: while Python imports click, say
        sys.stderr.write("Interrupted.\n")
        status = EXIT_INTERRUPTED
    finally:
        # The process ends here, and what it made goes with it. Frozen, its objects are spared the
        # interpreter's collections at exit (~50 ms of CPU) where Python's own teardown runs.
        gc.freeze()
    _end(status)


def _end(status: object) -> NoReturn:
    """End the process as multiprocessing ends its workers: what was registered to run at exit
    runs, the standard streams are flushed, and the interpreter's teardown, which frees every
    module and object one by one (~7 ms after every command), is skipped. By now the command
    has closed, and synced where it promises to, everything it wrote. While a thread that is
    not a daemon still runs, or for a status that is not a number, Python ends the process as
    usual (it waits for that thread; it prints that status)."""
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if others or not (status is None or isinstance(status, int)):
        sys.exit(status)
    atexit._run_exitfuncs()  # as Python's teardown would, once the threads have ended
    os._exit(_flushed(status or 0))


def _flushed(status: int) -> int:
    """Flush the standard streams: `status`, or 1 where the end of the output did not go out
    (said on stderr, unless the reader left or the command has already said what went wrong)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left, as in `_main`
        status = status or 1
    except ValueError:  # closed, once a reader left (see `_main`)
        pass
    except OSError as error:  # a full disk, an I/O error
        if not status:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"Error: the output is incomplete: {_refusal(error)}\n")
            status = 1
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    return status


def _agent_ahead(args: list[str]) -> AbstractContextManager[None]:
    """For `patas explore`, one local agent's process started now (most runs have one local
    node); the command's options then say how many the run needs, and those unused are ended."""
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command != "explore":
        return contextlib.nullcontext()
    gc.disable()
    from patas.broker.local.early_start import starting_early

    return starting_early(1)


def collect_from_now_on() -> None:
    """The start-up is over: what it made stays (frozen: never scanned again), and the
    collector runs as usual for what comes next. Where `main` did not turn it off (the CLI run
    in a test's process), nothing changes."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _main() -> None:
    import click

    from patas.cli.app import COMMANDS, cli
    from patas.common.errors import EXIT_ERROR, PatasError, escape_controls

    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(prog_name="patas", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as error:
        error.show()
        if isinstance(error, click.UsageError) and error.ctx is None:
            # Some of click's parser errors carry no context, hence no usage line: point at help.
            command = next((a for a in sys.argv[1:] if a in COMMANDS), "")
            click.echo(f"Try 'patas {command + ' ' if command else ''}--help' for help.", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except PatasError as error:
        if debug:
            raise
        click.echo(f"Error: {escape_controls(str(error))}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # `patas query ... | head`: the reader left; that is not an error worth a traceback.
        sys.stderr.close()
        sys.exit(EXIT_ERROR)
    except OSError as error:
        # What the system refused outside the lab (whose errors are PatasErrors naming the file):
        # most often the output itself, `patas query ... > file` on a full disk.
        if debug:
            raise
        click.echo(f"Error: {_refusal(error)} (--debug shows where)", err=True)
        sys.exit(EXIT_ERROR)


def _refusal(error: OSError) -> str:
    from patas.common.errors import refused_file

    reason, named = error.strerror or str(error), refused_file(error)
    return f"{named}: {reason}" if named else reason


if __name__ == "__main__":
    main()
