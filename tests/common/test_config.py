import textwrap

import pytest

from patas.common.config import load_cluster, load_experiment, parse_node_spec
from patas.common.errors import ConfigError

EXPERIMENT = """
name: nn
workdir: /tmp
repeat: 3
max_tries: 2
timeout: 60
cmd:
  - ./prepare.sh {act}
  - ./main.py {neurons} {act} {lr}
vars:
  - {name: act, type: list, values: [relu, tanh]}
  - {name: neurons, type: arithmetic, min: 1, max: 10, step: 4}
  - {name: lr, type: geometric, min: 0.001, max: 1, factor: 10}
"""


def write(tmp_path, text, name="file.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_experiment_file_loads_into_typed_objects(tmp_path):
    experiment = load_experiment(write(tmp_path, EXPERIMENT))
    assert (experiment.name, experiment.workdir, experiment.repeat, experiment.max_tries, experiment.timeout_s) == (
        "nn", "/tmp", 3, 2, 60
    )
    assert [t.text for t in experiment.commands] == ["./prepare.sh {act}", "./main.py {neurons} {act} {lr}"]
    assert [v.values for v in experiment.variables] == [("relu", "tanh"), ("1", "5", "9"), ("0.001", "0.01", "0.1")]
    assert experiment.task_count == 2 * 3 * 3 * 3


def test_a_record_loads_back_to_the_same_experiment(tmp_path):
    import yaml

    experiment = load_experiment(write(tmp_path, EXPERIMENT))
    again = load_experiment(write(tmp_path, yaml.safe_dump(experiment.to_record()), "record.yaml"))
    assert again == experiment


@pytest.mark.parametrize(
    "text, message",
    [
        ("cmd: x\nrepaet: 2\n", "unknown key 'repaet' (did you mean 'repeat'?) (allowed: name, workdir, repeat, max_tries, timeout, cmd, vars)"),
        ("cmd: x\nrepeat: two\n", "'repeat' must be an integer, got a string 'two'"),
        ("cmd: x\nrepeat: true\n", "'repeat' must be an integer, got a boolean True"),
        ("repeat: 2\n", "missing key 'cmd'"),
        ("cmd: x\nrepeat: 0\n", "repeat must be at least 1, got 0"),
        ("cmd: x {a}\nvars: [{name: a, type: lisst, values: [1]}]\n", "unknown type 'lisst' (did you mean 'list'?)"),
        ("cmd: x {a}\nvars: [{name: a, values: []}]\n", "variable 'a' has no values"),
        ("cmd: x {a}\nvars: [{name: a, values: [1]}, {name: a, values: [2]}]\n", "variable 'a' is defined twice"),
        ("cmd: x {a}\nvars: [{name: a, type: arithmetic, min: 1, max: 5}]\n", "missing key 'step'"),
        ("cmd: x {a}\nvars: [{name: a, type: arithmetic, min: 1, max: 5, step: 0}]\n", "has step 0"),
        ("cmd: x {b}\nvars: [{name: a, values: [1]}]\n", "uses {b} but no variable is named 'b'"),
        ("cmd: [x, 3]\n", "'cmd' must be a command or a list of commands"),
        ("- just\n- a list\n", "expected a mapping of keys"),
        ("cmd: 'x\n", "not valid YAML"),
    ],
)
def test_experiment_errors_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such file"):
        load_experiment(tmp_path / "nope.yaml")


def test_cluster_file(tmp_path):
    cluster = load_cluster(write(tmp_path, """
        name: lab
        nodes:
          - {name: tower, hostname: 10.0.0.5, user: ana, port: 2222, private_key: ~/.ssh/k, workers: 8, tags: [gpu, big]}
          - {hostname: localhost}
    """))
    tower, local = cluster.nodes
    assert (cluster.name, tower.address, tower.workers, tower.tags, tower.private_key) == ("lab", "ana@10.0.0.5:2222", 8, ("gpu", "big"), "~/.ssh/k")
    assert (local.name, local.is_local, local.workers) == ("node1", True, None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nodes: []\n", "'nodes' is empty"),
        ("nodes: [{name: a}]\n", "missing key 'hostname'"),
        ("nodes: [{hostname: h, port: 70000}]\n", "port 70000 is out of range (1-65535)"),
        ("nodes: [{hostname: h, workers: 0}]\n", "must be at least 1, got 0"),
        ("nodes: [{hostname: h, privat_key: k}]\n", "unknown key 'privat_key' (did you mean 'private_key'?)"),
        ("nodes: [{name: a, hostname: h}, {name: a, hostname: g}]\n", "two nodes are named 'a'"),
    ],
)
def test_cluster_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_cluster(write(tmp_path, text))


def test_node_specs():
    node = parse_node_spec(("ana@gpu1:2222", "8", "fast", "gpu"), 3)
    assert (node.name, node.user, node.hostname, node.port, node.workers, node.tags) == ("node3", "ana", "gpu1", 2222, 8, ("fast", "gpu"))
    assert parse_node_spec(("localhost",), 0).is_local
    with pytest.raises(ConfigError, match="'many' is not a whole number"):
        parse_node_spec(("localhost", "many"), 0)
    with pytest.raises(ConfigError, match="port 0 is out of range"):
        parse_node_spec(("host:0",), 0)
