"""`patas explore`: run a command for every combination of variables."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from patas.broker.local.early_start import starting_early
from patas.broker.run.halt import FAIL_FAST_FIRST_TASKS
from patas.cli.lab_options import lab_option
from patas.cli.main import collect_from_now_on
from patas.cli.nodes import clusters_from, node_options, ssh_options_from
from patas.cli.options import VariadicOption
from patas.cli.slurm import slurm_options, slurm_options_from, with_gpus_per_task
from patas.common.byte_sizes import parse_size
from patas.common.config import (
    DEFAULT_MAX_TRIES,
    Cluster,
    Experiment,
    check_experiment_name,
    experiment_from_flags,
    load_experiment,
    with_overrides,
)
from patas.common.collected_files import collect_rule
from patas.common.errors import EXIT_INTERRUPTED, EXIT_TASKS_FAILED, ConfigError, UsageError
from patas.common.variables import Variable, VariableKind, arithmetic_variable, geometric_variable, list_variable, sampled_variable

_SAMPLED_FLAG = {VariableKind.UNIFORM: "vu", VariableKind.LOGUNIFORM: "vlog", VariableKind.INT: "vi"}

if TYPE_CHECKING:  # imported when run: `patas explore --help` stays light
    from patas.broker.run.exploration import Exploration
    from patas.broker.run.task_filter import TaskFilter
    from patas.broker.slurm.options import SlurmOptions
    from patas.cli.detach import Detachment
    from patas.common.search import Metric, Search

EXAMPLE = """
\b
Example (from examples/basic_usage):
  patas explore --type grid \\
      --cmd './main.py {neurons} {activation} {preprocessing}' \\
      --va neurons 1 51 2 \\
      --vl preprocessing fast medium intense \\
      --vl activation relu leaky_relu sigmoid tanh \\
      --node localhost \\
      --repeat 10
"""


@click.command(epilog=EXAMPLE)
@click.option("--type", "sweep_type", type=click.Choice(["grid", "random", "sobol", "tpe"]), default="grid", show_default=True,
              help="grid runs every combination; random, sobol and tpe search the space (see docs/search.md).")
@click.option("--cmd", "commands", multiple=True, metavar="COMMAND",
              help="Command to run; {name} is replaced by variable NAME's value. Repeat to run several, one after the other.")
@click.option("--vl", "list_vars", cls=VariadicOption, metavar="NAME VALUE...", help="A variable taking the listed values.")
@click.option("--va", "arithmetic_vars", multiple=True, nargs=4, metavar="NAME MIN MAX STEP",
              help="A variable from MIN up to MAX (exclusive) by STEP, like range().")
@click.option("--vg", "geometric_vars", multiple=True, nargs=4, metavar="NAME MIN MAX FACTOR",
              help="A variable MIN, MIN*FACTOR, ... below MAX.")
@click.option("--vu", "uniform_vars", multiple=True, nargs=3, metavar="NAME LOW HIGH", help="A search variable: real numbers from LOW to HIGH.")
@click.option("--vlog", "loguniform_vars", multiple=True, nargs=3, metavar="NAME LOW HIGH",
              help="A search variable: real numbers from LOW to HIGH, log-uniform (LOW > 0).")
@click.option("--vi", "int_vars", multiple=True, nargs=3, metavar="NAME LOW HIGH", help="A search variable: integers from LOW to HIGH, both included.")
@click.option("--objective", nargs=3, default=None, metavar="max|min NAME PATTERN",
              help="A search's objective: the last match of PATTERN's group in each trial's output (placeholders as in parse).")
@click.option("--report", nargs=3, default=None, metavar="min|max NAME PATTERN",
              help="Intermediate values read as a trial runs: PATTERN's groups are the step (@int@) and the value.")
@click.option("--prune", type=click.Choice(["asha", "median", "hyperband"]), default=None,
              help="Stop trials whose --report values fall behind (outcome pruned).")
@click.option("--trials", type=int, default=None, metavar="N", help="Trials a search makes in all, counting earlier runs'.")
@click.option("--budget", default=None, metavar="DURATION", help="Start no new trial after this long (90s, 15m, 2h).")
@click.option("--seed", type=int, default=None, help="Seed of the search's sampler (the same seed suggests the same values).")
@click.option("--new-study", is_flag=True, help="Start a new study in the experiment's folder instead of continuing the last.")
@click.option("--repeat", type=int, default=None, help="Runs of each combination.  [default: 1]")
@click.option("--max-tries", type=int, default=None, help=f"Attempts per task before giving up.  [default: {DEFAULT_MAX_TRIES}]")
@click.option("--timeout", type=float, default=None, metavar="SECONDS", help="Kill a task (its whole process tree) after this long.")
@click.option("--workdir", default=None, help="Folder the commands run in.  [default: the current folder]")
@click.option("--collect", "collect_globs", multiple=True, metavar="GLOB",
              help="Bring back the files matching GLOB that a task writes in its folder $PATAS_TASK_DIR, into "
                   "OUTPUT/NAME/<task_id>/files/ (repeatable; ** spans folders).")
@click.option("--collect-limit", default=None, metavar="SIZE",
              help="Fail a task whose collected files take more than SIZE (e.g. 500M, 2G).  [default: 1G]")
@click.option("--ship", "ship_paths", multiple=True, metavar="PATH",
              help="Copy PATH (relative to the current folder; repeatable) to every node first; tasks run in the node's copy.")
@click.option("--ship-limit", default="4GB", show_default=True, metavar="SIZE", help="Refuse to ship more than this (e.g. 500MB).")
@click.option("--name", default=None, help="Experiment name; outputs go to OUTPUT/NAME.  [default: the --type: grid, random, sobol or tpe]")
@click.option("--experiment", "experiment_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Experiment YAML file (repeatable; mixes with the flags above).")
@click.option("--filter-tasks", "task_filter", default=None, metavar="[EXP:]A:B", help="Run only task ids A to B (A:, :B and A work too).")
@lab_option
@click.option("--redo", is_flag=True, help="Run every task again, even those already done.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-q", "--quiet", is_flag=True, help="Show only errors and the final summary.")
@click.option("--agent-timeout", type=float, default=None, metavar="SECONDS",
              help="Declare an agent lost after this long without a word; its tasks run elsewhere.  [default: 10]")
@node_options
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run N tasks at once on this machine: short for --node localhost N.")
@click.option("--halt", default=None, metavar="WHEN,WHAT=N",
              help="Stop early, as GNU parallel: now|soon,fail|success|done=N or N%, or never.  "
                   f"[default: stop now if the first {FAIL_FAST_FIRST_TASKS} tasks tried all fail]")
@click.option("--dry-run", is_flag=True, help="Show the plan and the first tasks' commands; run nothing, write nothing.")
@click.option("--pool", default=None, metavar="NAME", help="Run on the agents of a pool started with `patas pool up`.")
@click.option("--tunnel", is_flag=True, help="Agents reach the broker through their SSH connection (for nodes that cannot reach this machine).")
@click.option("--bind", "bind_address", default=None, metavar="HOST[:PORT]",
              help="Where the broker listens.  [default: where each node reached over SSH sees this machine; loopback for local nodes]")
@click.option("--advertise", default=None, metavar="HOST", help="The address agents connect to, when it differs from the one SSH used.")
@click.option("--detach", is_flag=True,
              help="Run in the background, free of this terminal (it survives logging out); see patas attach and patas stop.")
@click.option("--no-sync", is_flag=True, help="Do not fsync outputs before marking tasks done (faster; a power cut may lose them).")
@click.option("--gpus-per-task", type=int, default=None, metavar="K",
              help="Give each worker K GPUs of its own (CUDA_VISIBLE_DEVICES, PATAS_GPUS): of a node's gpus: list, "
                   "GPUs 0.. of --node HOST WORKERS, or what Slurm granted.")
@slurm_options
def explore(**options: object) -> None:
    """Run a command for every combination of variables, in parallel, keeping every output.

    Each task's stdout and stderr land in OUTPUT/NAME/<task_id>/. Running the same command
    again skips tasks already done; edit the grid and only the new tasks run.
    """
    detachment = _detachment(options)
    experiments = _experiments(options)
    for warning in dict.fromkeys(w for e in experiments for t in e.commands for w in t.warnings):
        click.echo(f"Warning: {warning}", err=True)
    pool = options["pool"]
    if pool and (options["cluster_files"] or options["node_specs"]):
        raise ConfigError("--pool runs on the pool's agents; leave out --cluster and --node")
    slurm = slurm_options_from(options)
    _jobs_as_node(options)
    clusters = [] if pool or slurm else with_gpus_per_task(clusters_from(options), options["gpus_per_task"])  # type: ignore[arg-type]
    # As many local agents' processes as the run needs wait from now on (the CLI started one
    # before it parsed the options), getting through Python's start and their imports while
    # this process imports the coordinator and plans.
    local_nodes = 0 if options["dry_run"] else sum(node.is_local for cluster in clusters for node in cluster.nodes)
    with starting_early(local_nodes):
        status = _plan_and_run(experiments, clusters, pool, slurm, detachment, options)  # type: ignore[arg-type]
    if status:
        sys.exit(status)


def _plan_and_run(
    experiments: list[Experiment], clusters: list[Cluster], pool: str | None, slurm: SlurmOptions | None,
    detachment: Detachment | None, options: dict[str, object],
) -> int:  # fmt: skip
    """Plan, show the plan, ask, run (or, with --dry-run, show what would run); the exit status."""
    from patas.cli.progress import confirm

    settings, ssh = _run_settings(options)
    task_filter = _task_filter(options)
    lab_root = Path(str(options["lab_root"]))
    quiet = bool(options["quiet"])
    if options["dry_run"]:
        if slurm is not None:
            from patas.broker.slurm.session import slurm_cluster

            clusters = [slurm_cluster(slurm)]  # nothing is submitted
        _dry_run(experiments, clusters, lab_root, bool(options["redo"]), task_filter, pool, quiet)
        return 0
    with _prepare(experiments, clusters, lab_root, task_filter, settings, ssh, pool, slurm, options) as exploration:
        if detachment is None:
            _say_plan(exploration, quiet)
        counts = exploration.counts()
        if counts.total - counts.skipped == 0:
            exploration.record_definitions()  # accepted: the lab now says what was asked for
            selected = f" --filter-tasks {task_filter} selects" if task_filter else ""
            click.echo(f"Nothing to run: every task{selected} is done (use --redo to run them again).", err=True)
            return 0
        if detachment is not None:  # in the background: it asks nothing, it says everything in its log
            detachment.move_to_log([plan.lab.path for plan in exploration.plans])
            _say_plan(exploration, quiet)
            return detachment.guard(lambda: _run(exploration, quiet, detachment))
        if not options["yes"] and not confirm(exploration):
            click.echo("Nothing was run.", err=True)
            return 0
        return _run(exploration, quiet, None)


def _say_plan(exploration: Exploration, quiet: bool) -> None:
    """The plan on stderr; with -q only the nodes left out, news as a node lost later is."""
    from patas.cli.progress import describe_left_out, describe_plan

    text = describe_left_out(exploration) if quiet else describe_plan(exploration)
    if text:
        click.echo(text, err=True)


def _detachment(options: dict[str, object]) -> Detachment | None:
    """The background process of a --detach run, None in the foreground; the terminal's process
    of a --detach run starts the background one and exits here."""
    if not options["detach"]:
        return None
    from patas.cli.detach import Detachment, start_in_background  # --detach only

    detachment = Detachment.from_environment()
    if detachment is None:
        if options["dry_run"]:
            raise UsageError("--dry-run runs nothing, --detach runs it in the background: leave one out")
        start_in_background()
    return detachment


def _prepare(experiments, clusters, lab_root, task_filter, settings, ssh, pool, slurm, options) -> Exploration:  # type: ignore[no-untyped-def]
    # Imported after the local agents have started, to overlap with them.
    from patas.broker.run.exploration import prepare

    return prepare(
        experiments, clusters, lab_root, bool(options["redo"]), task_filter, settings, ssh, pool, slurm,
        parse_size(str(options["ship_limit"]), "--ship-limit"), bool(options["new_study"]),
    )  # fmt: skip


def _run(exploration: Exploration, quiet: bool, detachment: Detachment | None) -> int:
    """Run the plan with progress, summarize; the exit status."""
    from patas.cli.progress import RunReporter

    if exploration.shipment is not None:
        from patas.cli.ship_progress import ShipReporter  # --ship only

        exploration.ship(ShipReporter(quiet))
    if detachment is None:
        reporter = RunReporter(quiet=quiet, workers=exploration.workers)
    else:
        from patas.cli.detach import DetachedReporter  # --detach only

        reporter = DetachedReporter(quiet, exploration.workers, detachment)
    collect_from_now_on()
    with reporter:
        result = exploration.run(reporter)
    reporter.summarize(result, exploration)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_TASKS_FAILED if result.failed else 0


def _jobs_as_node(options: dict[str, object]) -> None:
    """`-j N` is `--node localhost N`; with other nodes it would be ambiguous."""
    if options["jobs"] is None:
        return
    if options["cluster_files"] or options["node_specs"] or options["pool"]:
        raise UsageError("-j N runs N tasks at once on this machine; leave out --node, --cluster and --pool (or add --node localhost N)")
    options["node_specs"] = (("localhost", str(options["jobs"])),)


def _dry_run(experiments, clusters, lab_root, redo, task_filter, pool, quiet) -> None:  # type: ignore[no-untyped-def]
    from patas.broker.run.dry_run import dry_run
    from patas.cli.progress import describe_dry_run

    plan, commands = describe_dry_run(dry_run(experiments, clusters, lab_root, redo, task_filter, pool))
    if not quiet:
        click.echo(plan, err=True)
    if commands:
        click.echo(commands)


def _run_settings(options: dict[str, object]):  # type: ignore[no-untyped-def]
    from patas.broker.run.coordinator import DEFAULT_AGENT_TIMEOUT_S, RunSettings
    from patas.broker.run.halt import FAIL_FAST, HaltPolicy

    timeout = options["agent_timeout"]
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):  # type: ignore[arg-type, operator]
        raise ConfigError(f"--agent-timeout {timeout}: must be a positive number of seconds")
    bind_host, bind_port = _host_port(options["bind_address"], "--bind")  # type: ignore[arg-type]
    settings = RunSettings(
        agent_timeout_s=timeout or DEFAULT_AGENT_TIMEOUT_S,  # type: ignore[arg-type]
        halt=HaltPolicy.parse(str(options["halt"])) if options["halt"] is not None else FAIL_FAST,
        sync=not options["no_sync"],
        bind_host=bind_host,
        bind_port=bind_port,
    )
    ssh = ssh_options_from(options, tunnel=bool(options["tunnel"]), advertise_host=options["advertise"], bind_host=bind_host)
    return settings, ssh


def _host_port(text: str | None, option: str) -> tuple[str | None, int]:
    if text is None:
        return None, 0
    host, _, port = text.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{option} {text}: the port must be a number from 1 to 65535")
    return host or None, int(port or 0)


def _experiments(options: dict[str, object]) -> list[Experiment]:
    overrides = {
        "repeat": options["repeat"],
        "max_tries": options["max_tries"],
        "workdir": _display_path(str(options["workdir"])) if options["workdir"] else None,
        "timeout_s": options["timeout"],
        "ship": tuple(options["ship_paths"]) or None,  # type: ignore[call-overload]
    }
    experiments = [load_experiment(path) for path in options["experiment_files"]]  # type: ignore[attr-defined]
    variables = _variables(options)
    commands = list(options["commands"])  # type: ignore[call-overload]
    if options["name"] is not None:
        check_experiment_name(str(options["name"]), "--name")
    if not commands:
        if variables:
            raise ConfigError("variables given but no --cmd to use them (add --cmd '...')")
        if not experiments:
            raise ConfigError("nothing to run: give --cmd '...' or --experiment FILE")
        if options["name"] is not None:  # names the one experiment there is (with --cmd, that one)
            if len(experiments) > 1:
                raise ConfigError(f"--name {options['name']}: names one experiment, and {len(experiments)} files are given (set each one's 'name:')")
            overrides["name"] = options["name"]
        return [_with_collect(_with_search_flags(with_overrides(e, **overrides), options), options) for e in experiments]
    flags_experiment = experiment_from_flags(
        str(options["sweep_type"] if options["name"] is None else options["name"]),  # a search is named after its type
        commands,
        variables,
        1 if overrides["repeat"] is None else overrides["repeat"],  # type: ignore[arg-type]
        DEFAULT_MAX_TRIES if overrides["max_tries"] is None else overrides["max_tries"],  # type: ignore[arg-type]
        overrides["workdir"] or _display_path(os.getcwd()),  # type: ignore[arg-type]
        overrides["timeout_s"],  # type: ignore[arg-type]
        overrides["ship"] or (),  # type: ignore[arg-type]
        _search(options),
    )
    return [_with_collect(e, options) for e in [*experiments, flags_experiment]]


def _with_collect(experiment: Experiment, options: dict[str, object]) -> Experiment:
    """--collect replaces an experiment file's `collect:`; --collect-limit its `collect_limit:`."""
    globs = list(options["collect_globs"]) or list(experiment.collect.globs)  # type: ignore[call-overload]
    limit = options["collect_limit"]
    rule = collect_rule(globs, str(limit) if limit is not None else experiment.collect.limit_bytes, "--collect", "--collect-limit")
    return replace(experiment, collect=rule)


def _task_filter(options: dict[str, object]) -> TaskFilter | None:
    if not options["task_filter"]:
        return None
    from patas.broker.run.task_filter import TaskFilter

    return TaskFilter.parse(str(options["task_filter"]))


# The flags that `make_search` refuses for a grid.
_SEARCH_FLAGS = ("objective", "report", "prune", "trials", "budget", "seed")
# Those that change how long a search of an experiment file runs, or its seed, without --type.
_SEARCH_RUN_FLAGS = ("trials", "budget", "seed")


def _search(options: dict[str, object]) -> Search | None:
    """The search the flags ask for; None for a grid. A run with no search flag is a grid, and
    does not import the searches' module (every class it defines costs start-up time)."""
    if options["sweep_type"] == "grid" and all(options[flag] is None for flag in _SEARCH_FLAGS):
        return None
    from patas.common.search import make_search, metric, parse_duration, pruner, search_type

    def given(option: str) -> Metric | None:
        words = options[option]
        return metric(*words, f"--{option}") if words else None  # type: ignore[misc]

    budget = parse_duration(str(options["budget"]), "--budget") if options["budget"] is not None else None
    prune = pruner(str(options["prune"]), "--prune") if options["prune"] else None
    kind = search_type(str(options["sweep_type"]), "--type")
    return make_search(kind, given("objective"), given("report"), prune, options["trials"], budget, options["seed"], "command line")  # type: ignore[arg-type]


def _with_search_flags(experiment: Experiment, options: dict[str, object]) -> Experiment:
    """An experiment file's experiment under the search flags. With --type they make a search, as
    for --cmd; without, a file's own search takes --trials, --budget and --seed in place of its
    values (as --repeat overrides 'repeat:'), and the flags that would make another search ask
    for --type. A grid file takes no search flag without --type."""
    if options["sweep_type"] != "grid" or experiment.search is None:
        search = _search(options)
        return experiment if search is None else replace(experiment, search=search)
    other = next((flag for flag in _SEARCH_FLAGS if flag not in _SEARCH_RUN_FLAGS and options[flag] is not None), None)
    if other is not None:
        raise ConfigError(
            f"--{other}: experiment '{experiment.name}' has its own search (its file's 'search:');"
            " change it there, or give --type too for another search"
        )
    if all(options[flag] is None for flag in _SEARCH_RUN_FLAGS):
        return experiment
    from patas.common.search import make_search, parse_duration

    own = experiment.search
    trials = own.trials if options["trials"] is None else options["trials"]
    budget = own.budget_s if options["budget"] is None else parse_duration(str(options["budget"]), "--budget")
    seed = own.seed if options["seed"] is None else options["seed"]
    search = make_search(own.type, own.objective, own.report, own.prune, trials, budget, seed, "command line")  # type: ignore[arg-type]
    return replace(experiment, search=search)


def _variables(options: dict[str, object]) -> list[Variable]:
    variables = []
    for words in options["list_vars"]:  # type: ignore[attr-defined]
        variables.append(list_variable(words[0], list(words[1:]), f"--vl {words[0]}"))
    for name, low, high, step in options["arithmetic_vars"]:  # type: ignore[attr-defined]
        variables.append(arithmetic_variable(name, low, high, step, f"--va {name}"))
    for name, low, high, factor in options["geometric_vars"]:  # type: ignore[attr-defined]
        variables.append(geometric_variable(name, low, high, factor, f"--vg {name}"))
    for option, kind in (("uniform_vars", VariableKind.UNIFORM), ("loguniform_vars", VariableKind.LOGUNIFORM), ("int_vars", VariableKind.INT)):
        for name, low, high in options[option]:  # type: ignore[attr-defined]
            variables.append(sampled_variable(kind, name, low, high, f"--{_SAMPLED_FLAG[kind]} {name}"))
    return variables


def _display_path(path: str) -> str:
    """An absolute path, written as $HOME/... when under the home folder (it resolves per node)."""
    if path == "~" or path.startswith(("~/", "$HOME")):
        return "$HOME" + path[1:] if path.startswith("~") else path  # the nodes' home, not ours
    absolute = os.path.abspath(os.path.expanduser(path))
    home = os.path.expanduser("~")
    if home not in ("/", "") and (absolute == home or absolute.startswith(home.rstrip("/") + "/")):
        return "$HOME" + absolute[len(home.rstrip("/")) :]
    return absolute
