import textwrap

import pytest

from patas.common.config import check_experiment_name, load_cluster, load_experiment, parse_node_spec
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
        ("cmd: x\nrepaet: 2\n", "unknown key 'repaet' (did you mean 'repeat'?) (allowed: name, workdir, repeat, max_tries, timeout, ship, cmd, vars, collect, collect_limit, search)"),
        ("cmd: x\nrepeat: two\n", "'repeat' must be an integer, got a string 'two'"),
        ("cmd: x\nrepeat: true\n", "'repeat' must be an integer, got a boolean True"),
        ("repeat: 2\n", "missing key 'cmd'"),
        ("cmd: x\nrepeat: 0\n", "'repeat' must be at least 1, got 0"),
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
        ("nodes: [{hostname: 'gpu 1'}]\n", "hostname: 'gpu 1' is not a host name or address (e.g. gpu1, 10.0.0.7 or ::1)"),
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


@pytest.mark.parametrize(
    "spec, user, host, port, address",
    [
        ("[::1]:2222", None, "::1", 2222, "[::1]:2222"),
        ("ana@[fe80::1]", "ana", "fe80::1", None, "ana@fe80::1"),
        ("::1", None, "::1", None, "::1"),
        ("10.0.0.7:22", None, "10.0.0.7", 22, "10.0.0.7:22"),
    ],
)
def test_an_ipv6_address_takes_a_port_in_brackets(spec, user, host, port, address):
    node = parse_node_spec((spec,), 0)
    assert (node.user, node.hostname, node.port, node.address) == (user, host, port, address)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gpu 1", "--node gpu 1: 'gpu 1' is not a host name or address"),
        ("a/b", "--node a/b: 'a/b' is not a host name or address"),
        ("a\tb", "--node a\tb: 'a\\tb' is not a host name or address"),
        ("[::1", "--node [::1: expected [address] or [address]:port for an IPv6 address, e.g. [::1]:22"),
        ("[::1]22", "--node [::1]22: expected [address] or [address]:port"),
    ],
)
def test_a_host_with_a_typo_is_refused_before_any_connection(spec, message):
    with pytest.raises(ConfigError) as error:
        parse_node_spec((spec,), 0)
    assert str(error.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Strict YAML: values as typed, no duplicate keys, UTF-8, no NUL.

AS_TYPED = ["010", "0x1F", "yes", "~", "1e3", ".5", "on", "2024-01-01", "1_000", "null", "TRUE", "-.inf", "0o17", ""]


def test_values_reach_the_program_as_typed_not_as_yaml_1_1_reads_them(tmp_path):
    items = "\n".join(f"      - {value}" for value in AS_TYPED)
    experiment = load_experiment(write(tmp_path, f"cmd: echo {{a}} {{b}}\nvars:\n  - name: a\n    values:\n{items}\n"
                                       "  - {name: b, type: arithmetic, min: 1e3, max: 3e3, step: 1e3}\n"))
    assert experiment.variables[0].values == tuple(AS_TYPED)
    assert experiment.variables[1].bounds == ("1e3", "3e3", "1e3")
    # The record keeps them too, so a rerun recognises its tasks.
    import yaml

    again = load_experiment(write(tmp_path, yaml.safe_dump(experiment.to_record()), "record.yaml"))
    assert again.variables == experiment.variables


def test_typed_fields_still_read_numbers_by_the_yaml_1_2_core_schema(tmp_path):
    experiment = load_experiment(write(tmp_path, "cmd: x\nrepeat: 010\nmax_tries: 0x2\ntimeout: 1e3\n"))
    assert (experiment.repeat, experiment.max_tries, experiment.timeout_s) == (10, 2, 1000.0)
    cluster = load_cluster(write(tmp_path, "nodes: [{hostname: h, port: 0o26, workers: 4, tags: [1, yes]}]\n"))
    assert (cluster.nodes[0].port, cluster.nodes[0].workers, cluster.nodes[0].tags) == (22, 4, ("1", "yes"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("cmd: x\nrepeat: 2\nrepeat: 3\n", "line 3: key 'repeat' is given twice (first on line 2; keep one)"),
        ("cmd: x {a}\nvars:\n  - {name: a, values: [1], values: [2]}\n", "line 3: key 'values' is given twice"),
        ('cmd: "echo \\0"\n', "line 1: a NUL byte (\\0) in a value; no program can receive one"),
        ('cmd: x {a}\nvars: [{name: a, values: ["\\x00"]}]\n', "line 2: a NUL byte"),
        ("cmd: x\ntimeout: .nan\n", "'timeout' must be a positive number of seconds, got nan"),
        ("cmd: x\ntimeout: .inf\n", "'timeout' must be a positive number of seconds, got inf"),
        ("cmd: ''\n", "command 1 is empty"),
        ("cmd: [x, '  ']\n", "command 2 is empty"),
        ("cmd: x {a}\nvars: [{name: a, values: [1, 01]}]\n", None),
        ("cmd: x {a}\nvars: [{name: a, values: [b, b]}]\n", "variable 'a' lists the value 'b' twice"),
        ("cmd: x\nrepeat: !!int abc\n", "'abc' is not a int"),
    ],
)
def test_strict_yaml_errors_are_one_line_with_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    if message is None:  # 1 and 01 are different values, as typed
        assert load_experiment(path).variables[0].values == ("1", "01")
        return
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_duplicate_keys_in_a_cluster_file_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3: key 'hostname' is given twice \(first on line 2"):
        load_cluster(write(tmp_path, "nodes:\n  - hostname: a\n    hostname: b\n"))


def test_invalid_utf8_names_the_line_and_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("cmd: x\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(error.value) == f"{path}: line 2: not UTF-8 (byte 0xe9 at offset 16); save the file as UTF-8"


def test_load_yaml_is_public_and_raises_the_error_asked_for(tmp_path):
    from patas.common.config import load_yaml
    from patas.common.errors import LabError

    assert load_yaml(write(tmp_path, "a: 010\nb: [yes, ~]\n")) == {"a": "010", "b": ["yes", "~"]}
    with pytest.raises(LabError, match="key 'a' is given twice"):
        load_yaml(write(tmp_path, "a: 1\na: 2\n"), LabError)


def test_a_value_beyond_the_argument_limit_is_refused_with_its_size_not_its_text(tmp_path):
    big = "x" * 140_000
    with pytest.raises(ConfigError) as error:
        load_experiment(write(tmp_path, f"cmd: echo {{a}}\nvars: [{{name: a, values: [small, {big}]}}]\n"))
    assert "value 2 of variable 'a' is 140,000 bytes; the OS takes at most 131,071 bytes in one argument" in str(error.value)
    assert len(str(error.value)) < 300


def test_a_command_too_long_once_filled_in_is_refused_before_anything_runs(tmp_path):
    half = "y" * 70_000
    with pytest.raises(ConfigError) as error:
        load_experiment(write(tmp_path, f"cmd: echo {{a}} {{b}}\nvars: [{{name: a, values: [{half}]}}, {{name: b, values: [{half}, z]}}]\n"))
    assert "command 1 with its longest values filled in is 140,006 bytes" in str(error.value)
    assert len(str(error.value)) < 300


def test_a_long_bad_value_is_echoed_cut_and_on_one_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_experiment(write(tmp_path, f"cmd: x\nrepeat: \"{'z' * 10_000}\\nq\"\n"))
    assert "bytes)" in str(error.value) and len(str(error.value)) < 300 and "\n" not in str(error.value)


def test_ship_paths_come_from_the_yaml_and_go_back_into_the_record(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("cmd: ./run.sh\nship: [src, run.sh]\n")
    experiment = load_experiment(path)
    assert experiment.ship == ("src", "run.sh")
    assert experiment.to_record()["ship"] == ["src", "run.sh"]
    path.write_text("cmd: ./run.sh\nship: .\n")
    assert load_experiment(path).ship == (".",)
    path.write_text("cmd: ./run.sh\nship: {a: 1}\n")
    with pytest.raises(ConfigError, match="'ship' must be a list or a string, got a mapping"):
        load_experiment(path)
    path.write_text("cmd: echo\n")
    assert "ship" not in load_experiment(path).to_record()  # a definition without it is unchanged


@pytest.mark.parametrize("name", ["grid", "_x", "my.exp", "run-3", "A9_b.c-d"])
def test_an_experiment_name_is_a_plain_folder_name(name):
    check_experiment_name(name, "--name")


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-x", "10", "2x", "a/b", "a b", "é", "a\nb", "a\x00b"])
def test_a_name_that_a_command_line_or_a_folder_would_misread_is_refused(name):
    with pytest.raises(ConfigError, match=r"^--name: experiment name '.*' must start with a letter or _, then letters, digits, _, - or \.$"):
        check_experiment_name(name, "--name")
