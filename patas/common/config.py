"""Experiment and cluster definitions: typed objects, loaded from YAML files or command-line flags.

The YAML schema is the original patas's:

    # experiment.yaml                      # cluster.yaml
    name: grid                             name: lab
    workdir: $HOME/project                 nodes:
    repeat: 10                               - name: tower
    max_tries: 3                               hostname: 10.0.0.5
    timeout: 600          # ours, seconds      user: ana
    cmd: ./main.py {neurons} {act}             port: 22
    vars:                                      private_key: ~/.ssh/id_ed25519
      - {name: act, type: list, values: [relu, tanh]}       workers: 8
      - {name: neurons, type: arithmetic, min: 1, max: 51, step: 2}   tags: [gpu]
      - {name: lr, type: geometric, min: 0.001, max: 1, factor: 10}

Unknown keys and wrong types are errors naming the file and the key, with a suggestion. Files are
read with `load_yaml` (patas/common/strict_yaml.py): values are kept as typed (`010`, `yes`, `~`
reach the program as written), and a key given twice is an error.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from patas.common.collected_files import CollectRule, collect_rule
from patas.common.errors import ConfigError, PatasError, did_you_mean, excerpt
from patas.common.scalar import typed
from patas.common.template import Slot, Template, compile_template
from patas.common.variables import (
    MAX_ARGUMENT_BYTES,
    check_argument_size,
    Variable,
    VariableKind,
    arithmetic_variable,
    geometric_variable,
    list_variable,
    sampled_variable,
)
from patas.common.wording import plural

if TYPE_CHECKING:  # a grid's run never imports the searches' module
    from patas.common.search import Search

DEFAULT_EXPERIMENT_NAME = "grid"
EXPERIMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
DEFAULT_CLUSTER_NAME = "cluster"
DEFAULT_MAX_TRIES = 3
DEFAULT_SSH_PORT = 22
LOCAL_HOSTNAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Experiment:
    """What to run: command templates and the variables whose combinations fill them."""

    name: str
    commands: tuple[Template, ...]
    variables: tuple[Variable, ...]
    repeat: int = 1
    max_tries: int = DEFAULT_MAX_TRIES
    workdir: str = "."
    timeout_s: float | None = None
    collect: CollectRule = CollectRule()  # files to bring back from each task's folder
    # Paths (relative to the current folder) shipped to every node; tasks run in the node's copy.
    ship: tuple[str, ...] = ()
    # Where the workdir was given, for messages: "--workdir", or the YAML file that set it.
    workdir_origin: str = field(default="--workdir", compare=False)
    search: Search | None = None  # None: a grid, every combination

    @property
    def combination_count(self) -> int:
        """A grid's combinations; a search's trials (0 when only its budget bounds them)."""
        if self.search is not None:
            return self.search.trials or 0
        count = 1
        for variable in self.variables:
            count *= len(variable.values)
        return count

    @property
    def task_count(self) -> int:
        return self.combination_count * self.repeat

    def to_record(self) -> dict[str, Any]:
        """The definition in the YAML schema, so a record can be loaded back with --experiment."""
        record: dict[str, Any] = {
            "name": self.name,
            "workdir": self.workdir,
            "repeat": self.repeat,
            "max_tries": self.max_tries,
        }
        if self.timeout_s is not None:
            record["timeout"] = self.timeout_s
        if self.collect.globs:
            record["collect"] = list(self.collect.globs)
            record["collect_limit"] = self.collect.limit_bytes
        if self.ship:
            record["ship"] = list(self.ship)
        record["cmd"] = [t.text for t in self.commands]
        record["vars"] = [_variable_record(v) for v in self.variables]
        if self.search is not None:
            record["search"] = self.search.to_record()
        return record


@dataclass(frozen=True)
class Node:
    """A machine that runs tasks, with how many at once (`workers`, None: its core count)."""

    name: str
    hostname: str
    user: str | None = None
    port: int | None = None
    private_key: str | None = None
    workers: int | None = None
    tags: tuple[str, ...] = ()
    gpus: tuple[str, ...] | None = None  # its GPUs as CUDA numbers them, shared out per worker
    gpus_per_task: int = 1  # GPUs each worker gets of its own (`--gpus-per-task`)

    def default_workers(self, cores: int) -> int:
        """Tasks at once: `workers`, else one per `gpus_per_task` GPUs, else one per core."""
        if self.workers:
            return self.workers
        if self.gpus:
            return max(1, len(self.gpus) // self.gpus_per_task)
        return cores

    @property
    def is_local(self) -> bool:
        return self.hostname in LOCAL_HOSTNAMES and self.user is None and self.port is None

    @property
    def address(self) -> str:
        """`user@host:port` as the user would write it, for messages."""
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.hostname}]" if ":" in self.hostname and self.port else self.hostname  # [::1]:22
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True)
class Cluster:
    name: str
    nodes: tuple[Node, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------
# Building from flags


def experiment_from_flags(
    name: str,
    commands: list[str],
    variables: list[Variable],
    repeat: int,
    max_tries: int,
    workdir: str,
    timeout_s: float | None,
    ship: tuple[str, ...] = (),
    search: Search | None = None,
) -> Experiment:
    _check_unique_names(variables, "command line")
    experiment = _experiment(name, commands, variables, repeat, max_tries, workdir, timeout_s, "--cmd", flag_of, search)
    return replace(experiment, ship=ship)


def parse_node_spec(words: tuple[str, ...], index: int) -> Node:
    """`--node HOST [WORKERS [TAGS...]]` where HOST is `[user@]host[:port]`."""
    host, rest = words[0], words[1:]
    user = None
    if "@" in host:
        user, host = host.split("@", 1)
    if not host or user == "":
        raise ConfigError(f"--node '{words[0]}': expected [user@]host[:port]")
    host, port = _host_and_port(host, f"--node {words[0]}")
    _check_host(host, f"--node {words[0]}")
    workers = None
    if rest:
        workers = _positive_int(rest[0], f"--node {words[0]}: workers")
    tags = tuple(rest[1:])
    return Node(f"node{index}", host, user, port, None, workers, tags)


# ---------------------------------------------------------------------------------------------
# Loading YAML files

_EXPERIMENT_KEYS = ("name", "workdir", "repeat", "max_tries", "timeout", "ship", "cmd", "vars", "collect", "collect_limit", "search")
_VARIABLE_KEYS = {
    VariableKind.LIST: ("name", "type", "values"),
    VariableKind.ARITHMETIC: ("name", "type", "min", "max", "step"),
    VariableKind.GEOMETRIC: ("name", "type", "min", "max", "factor"),
    VariableKind.UNIFORM: ("name", "type", "min", "max"),
    VariableKind.LOGUNIFORM: ("name", "type", "min", "max"),
    VariableKind.INT: ("name", "type", "min", "max"),
}
_CLUSTER_KEYS = ("name", "nodes")
_NODE_KEYS = ("name", "hostname", "user", "port", "private_key", "workers", "tags", "gpus", "gpus_per_task")


def load_experiment(path: str | Path) -> Experiment:
    where = str(path)
    data = _load_mapping(path)
    _check_keys(data, _EXPERIMENT_KEYS, where)
    name = _get(data, "name", str, where, default=Path(path).stem)
    raw_vars = _get(data, "vars", list, where, default=[])
    variables = [_variable(item, f"{where}: vars[{i}]") for i, item in enumerate(raw_vars)]
    _check_unique_names(variables, where)
    raw_cmd = _get(data, "cmd", (str, list), where)
    commands = [raw_cmd] if isinstance(raw_cmd, str) else raw_cmd
    if not all(isinstance(typed(c), str) for c in commands):
        raise ConfigError(f"{where}: 'cmd' must be a command or a list of commands (strings)")
    experiment = _experiment(
        name,
        commands,
        variables,
        _get(data, "repeat", int, where, default=1),
        _get(data, "max_tries", int, where, default=DEFAULT_MAX_TRIES),
        _get(data, "workdir", str, where, default=os.getcwd()),
        _get(data, "timeout", (int, float), where, default=None),
        f"{where}: cmd",
        lambda key: f"{where}: '{key}'",
        _search(data, where),
    )
    return replace(experiment, workdir_origin=where, collect=_collect(data, where), ship=_ship_paths(data, where))


def _search(data: dict[str, Any], where: str) -> Search | None:
    """The file's search; None for a grid, without importing the searches' module."""
    if typed(data.get("search")) is None:
        return None
    from patas.common.search import search_from_record

    return search_from_record(data["search"], f"{where}: search")


def _collect(data: dict[str, Any], where: str) -> CollectRule:
    globs = _get(data, "collect", (list, str), where, default=[])
    globs = [globs] if isinstance(globs, str) else globs
    if not all(isinstance(typed(g), str) for g in globs):
        raise ConfigError(f"{where}: 'collect' must be a glob or a list of globs (strings)")
    limit = _get(data, "collect_limit", (int, str), where, default=None)
    return collect_rule([str(g) for g in globs], limit, f"{where}: collect", f"{where}: collect_limit")


def _ship_paths(data: dict[str, Any], where: str) -> tuple[str, ...]:
    raw = _get(data, "ship", (list, str), where, default=[])
    paths = [raw] if isinstance(raw, str) else raw
    if not all(isinstance(p, str) and str(p) for p in paths):
        raise ConfigError(f"{where}: 'ship' must be a path or a list of paths (relative to the current folder)")
    return tuple(str(p) for p in paths)


def load_cluster(path: str | Path) -> Cluster:
    where = str(path)
    data = _load_mapping(path)
    _check_keys(data, _CLUSTER_KEYS, where)
    name = _get(data, "name", str, where, default=Path(path).stem)
    raw_nodes = _get(data, "nodes", list, where)
    if not raw_nodes:
        raise ConfigError(f"{where}: 'nodes' is empty (list at least one node)")
    nodes = [_node(item, i, f"{where}: nodes[{i}]") for i, item in enumerate(raw_nodes)]
    names = [n.name for n in nodes]
    for node_name in names:
        if names.count(node_name) > 1:
            raise ConfigError(f"{where}: two nodes are named '{node_name}' (node names must be unique)")
    return Cluster(name, tuple(nodes))


def load_yaml(path: str | Path, error: type[PatasError] = ConfigError) -> Any:
    """The YAML file at `path`, read strictly (see patas.common.strict_yaml)."""
    from patas.common import strict_yaml  # PyYAML (~20 ms) is imported when a file is read

    return strict_yaml.load_yaml(path, error)


def _load_mapping(path: str | Path) -> dict[str, Any]:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (name:, cmd:, ...) at the top level")
    return data


def _variable(item: object, where: str) -> Variable:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping with name, type and values")
    kind_text = _get(item, "type", str, where, default="list")
    try:
        kind = VariableKind(kind_text)
    except ValueError:
        kinds = [k.value for k in VariableKind]
        raise ConfigError(
            f"{where}: unknown type '{kind_text}'{did_you_mean(kind_text, kinds)} (use one of {', '.join(kinds)})"
        ) from None
    _check_keys(item, _VARIABLE_KEYS[kind], where)
    name = _get(item, "name", str, where)
    where = f"{where} ('{name}')"
    if kind is VariableKind.LIST:
        values = _get(item, "values", list, where)
        if not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: 'values' must be a list of plain values")
        return list_variable(name, [str(v) for v in values], where)
    bounds = [_text(item, key, where) for key in _VARIABLE_KEYS[kind][2:]]
    if kind.is_continuous:
        return sampled_variable(kind, name, *bounds, where)
    make = arithmetic_variable if kind is VariableKind.ARITHMETIC else geometric_variable
    return make(name, *bounds, where)


def _node(item: object, index: int, where: str) -> Node:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'hostname'")
    _check_keys(item, _NODE_KEYS, where)
    hostname = _get(item, "hostname", str, where)
    _check_host(hostname, f"{where}: hostname")
    name = _get(item, "name", str, where, default=f"node{index}")
    port = _get(item, "port", int, where, default=None)
    if port is not None:
        port = _port(str(port), f"{where}: port")
    workers = _get(item, "workers", int, where, default=None)
    if workers is not None:
        workers = _positive_int(str(workers), f"{where}: workers")
    tags = _get(item, "tags", (list, str), where, default=[])
    tags = [tags] if isinstance(tags, str) else tags
    gpus_per_task = _positive_int(str(_get(item, "gpus_per_task", int, where, default=1)), f"{where}: gpus_per_task")
    node = Node(
        name,
        hostname,
        _get(item, "user", str, where, default=None),
        port,
        _get(item, "private_key", str, where, default=None),
        workers,
        tuple(str(t) for t in tags),
        _gpus(item, where),
        gpus_per_task,
    )
    check_gpus_suffice(node, where)
    return node


def check_gpus_suffice(node: Node, where: str) -> None:
    """Refuse a node whose workers would have to share GPUs."""
    if node.gpus is None:
        return
    workers = node.default_workers(len(node.gpus))
    if workers * node.gpus_per_task > len(node.gpus):
        raise ConfigError(
            f"{where}: {plural(workers, 'worker')} with {plural(node.gpus_per_task, 'GPU')} each need {plural(workers * node.gpus_per_task, 'GPU')},"
            f" but gpus: lists {len(node.gpus)} (lower workers, or list more gpus)"
        )


def _gpus(item: dict[str, Any], where: str) -> tuple[str, ...] | None:
    """`gpus: [0, 1, 2, 3]`: device numbers (as CUDA_VISIBLE_DEVICES takes them), each once."""
    raw = _get(item, "gpus", list, where, default=None)
    if raw is None:
        return None
    devices = [str(typed(device)) for device in raw]
    for device in devices:
        if not device.isdigit():
            raise ConfigError(f"{where}: gpus: '{excerpt(device)}' is not a device number (write gpus: [0, 1, 2, 3])")
        if devices.count(device) > 1:
            raise ConfigError(f"{where}: gpus: device {device} is listed twice (each GPU goes to one worker)")
    if not devices:
        raise ConfigError(f"{where}: gpus: is empty (list the node's GPUs, or leave gpus: out)")
    return tuple(devices)


# ---------------------------------------------------------------------------------------------
# Shared checks


def _experiment(
    name: str,
    commands: list[str],
    variables: list[Variable],
    repeat: int,
    max_tries: int,
    workdir: str,
    timeout_s: float | None,
    where: str,
    named: Callable[[str], str],
    search: Search | None = None,
) -> Experiment:
    """The experiment, checked; `where` names its commands in messages, `named(key)` a setting."""
    check_experiment_name(name, where)
    if search is None:
        for variable in variables:
            if variable.kind.is_continuous:
                raise ConfigError(
                    f"{where}: variable '{variable.name}' is a {variable.kind.value} range, which a grid cannot"
                    " enumerate (add --type random, sobol or tpe)"
                )
    if not commands:
        raise ConfigError(f"{where}: no command given (add --cmd or 'cmd:')")
    _check_settings(repeat, max_tries, timeout_s, named)
    for number, command in enumerate(commands, 1):
        _check_command_text(command, number, where)
    names = tuple(v.name for v in variables)
    templates = tuple(compile_template(c, names, where) for c in commands)
    for number, template in enumerate(templates, 1):
        _check_rendered_size(template, number, {v.name: v for v in variables}, where)
    return Experiment(name, templates, tuple(variables), repeat, max_tries, workdir, timeout_s, search=search)


def check_experiment_name(name: str, where: str) -> None:
    """An experiment's name is its folder in the pataslab: one plain path component.

    Its first character is a letter or `_`: a leading `-` would make it an option to every
    command that takes it (`patas logs -x 0`), a leading digit a task range to --filter-tasks
    (`10:19`), a leading `.` a hidden folder, `.` or `..`.
    """
    if not EXPERIMENT_NAME.match(name):
        raise ConfigError(f"{where}: experiment name '{excerpt(name)}' must start with a letter or _, then letters, digits, _, - or .")


def _check_command_text(command: str, number: int, where: str) -> None:
    if not command.strip():
        raise ConfigError(f"{where}: command {number} is empty (give the shell line to run)")
    if "\0" in command:
        raise ConfigError(f"{where}: command {number} holds a NUL byte (\\0); no program can receive one (remove it)")


# The longest text of a sampled value: repr() of a float (`-1.2345678901234567e-308`).
_SAMPLED_VALUE_CHARS = 24
# A value grows at most this much when shell-quoted (each `'` outside quotes becomes `'"'"'`), and
# a UTF-8 character is at most 4 bytes: a cheap bound that spares measuring every quoted value.
_QUOTED_GROWTH = 5 * 4


def _check_rendered_size(template: Template, number: int, variables: dict[str, Variable], where: str) -> None:
    """Refuse a command that some combination of values makes longer than one argument can be."""
    literal = sum(len(part.encode()) for part in template.parts if isinstance(part, str))
    slots = [part for part in template.parts if isinstance(part, Slot)]
    longest = {name: max(map(len, variables[name].values), default=_SAMPLED_VALUE_CHARS) for name in template.names}
    if literal + sum(_QUOTED_GROWTH * longest[slot.name] + 2 for slot in slots) < MAX_ARGUMENT_BYTES:
        return
    size = literal + sum(_longest_quoted(slot, variables[slot.name]) for slot in slots)
    check_argument_size(size, f"command {number} with its longest values filled in", where)


def _longest_quoted(slot: Slot, variable: Variable) -> int:
    alone = Template("", (slot,))
    return max(
        (len(alone.render({slot.name: value}).encode("utf-8", "surrogateescape")) for value in variable.values),
        default=_SAMPLED_VALUE_CHARS,
    )


def with_overrides(experiment: Experiment, **changes: Any) -> Experiment:
    """The experiment with the given fields replaced (only those not None), which are flags'
    values: they are checked as the flags that gave them."""
    given = {k: v for k, v in changes.items() if v is not None}
    _check_settings(given.get("repeat"), given.get("max_tries"), given.get("timeout_s"), flag_of)
    if "workdir" in given:
        given["workdir_origin"] = "--workdir"
    return replace(experiment, **given)


# The flags that set an experiment's settings, by their keys in an experiment file.
_SETTING_FLAGS = {"repeat": "--repeat", "max_tries": "--max-tries", "timeout": "--timeout"}


def flag_of(key: str) -> str:
    """How a message names a setting given on the command line."""
    return _SETTING_FLAGS[key]


def _check_settings(repeat: int | None, max_tries: int | None, timeout_s: float | None, named: Callable[[str], str]) -> None:
    """The run settings that are given (not None) are usable; `named(key)` says where each came from."""
    if repeat is not None and repeat < 1:
        raise ConfigError(f"{named('repeat')} must be at least 1, got {repeat}")
    if max_tries is not None and max_tries < 1:
        raise ConfigError(f"{named('max_tries')} must be at least 1, got {max_tries}")
    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigError(f"{named('timeout')} must be a positive number of seconds, got {timeout_s:g}")


def _check_unique_names(variables: list[Variable], where: str) -> None:
    seen: set[str] = set()
    for variable in variables:
        if variable.name in seen:
            raise ConfigError(f"{where}: variable '{variable.name}' is defined twice (rename one)")
        seen.add(variable.name)


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}"
                f" (allowed: {', '.join(allowed)})"
            )


_MISSING = object()


def _get(data: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """The value of `key`, by its typed reading (`010` is the integer 10), checked against `kinds`."""
    value = typed(data.get(key))
    if value is None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing key '{key}'")
        return default
    expected = kinds if isinstance(kinds, tuple) else (kinds,)
    # YAML's `true` is an int subclass; it is never a valid number or name here.
    if isinstance(value, bool) or not isinstance(value, expected):
        names = " or ".join(_type_name(k) for k in expected)
        shown = repr(excerpt(value)) if isinstance(value, str) else repr(value)
        raise ConfigError(f"{where}: '{key}' must be {names}, got {_type_name(type(value))} {shown}")
    return value


def _text(data: dict[str, Any], key: str, where: str) -> str:
    """The value of `key` exactly as typed (`1e3` stays `1e3`), for range bounds."""
    value = data.get(key)
    if typed(value) is None:
        raise ConfigError(f"{where}: missing key '{key}'")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a number, got {_type_name(type(value))}")
    return str(value)


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a mapping", bool: "a boolean"}.get(
        kind, kind.__name__
    )


def _host_and_port(text: str, where: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[address]` or `[address]:port`: an IPv6 address with a port goes in
    brackets (`[::1]:22`), as in ssh and URLs; a bare one (`::1`) has no port."""
    if text.startswith("["):
        address, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ConfigError(f"{where}: expected [address] or [address]:port for an IPv6 address, e.g. [::1]:22")
        return address, _port(after[1:], where) if after else None
    if text.count(":") == 1:
        host, port_text = text.split(":")
        return host, _port(port_text, where)
    return text, None


def _check_host(host: str, where: str) -> None:
    """A host name or address has no space, slash, bracket, `@` or control character: such a word
    is a typo (`--node 'gpu 1'`), which would otherwise fail later as an unknown host."""
    if not host or any(c.isspace() or c in "/[]@" or not c.isprintable() for c in host):
        raise ConfigError(f"{where}: '{excerpt(host)}' is not a host name or address (e.g. gpu1, 10.0.0.7 or ::1)")


def _port(text: str, where: str) -> int:
    port = _int(text, where, "a port number")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} is out of range (1-65535)")
    return port


def _positive_int(text: str, where: str) -> int:
    number = _int(text, where, "a whole number")
    if number < 1:
        raise ConfigError(f"{where}: must be at least 1, got {number}")
    return number


def _int(text: str, where: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{where}: '{text}' is not {what}") from None


def _variable_record(variable: Variable) -> dict[str, Any]:
    if variable.bounds is None:
        return {"name": variable.name, "type": variable.kind.value, "values": list(variable.values)}
    if variable.kind.is_continuous:
        low, high, _ = variable.bounds
        return {"name": variable.name, "type": variable.kind.value, "min": low, "max": high}
    third = "step" if variable.kind is VariableKind.ARITHMETIC else "factor"
    low, high, last = variable.bounds
    return {"name": variable.name, "type": variable.kind.value, "min": low, "max": high, third: last}

