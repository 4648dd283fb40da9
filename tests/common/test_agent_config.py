"""An agent's configuration line (patas.common.agent_config): what patas writes reads back the
same, and any other line, whatever JSON it holds, is refused with a ProtocolError saying why,
never another exception (an agent started by hand reads a file a person wrote)."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

import pytest

from patas.common.agent_config import AgentConfig, CurveKeys
from patas.common.errors import ProtocolError

KEYS = CurveKeys("s" * 40, "p" * 40, "x" * 40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["broker_address", "agent_id", "slots", "keys", "debug", "persistent", "gpus", "gpus_per_task"]


@given(
    address=st.text(min_size=1), agent_id=st.text(min_size=1), slots=st.integers(1, 512), keys=st.sampled_from([None, KEYS]),
    debug=st.booleans(), persistent=st.booleans(), gpus=st.none() | st.lists(st.text(min_size=1, max_size=3), max_size=4).map(tuple),
)  # fmt: skip
def test_what_patas_writes_reads_back_the_same(address, agent_id, slots, keys, debug, persistent, gpus):
    config = AgentConfig(address, agent_id, slots, keys, debug, persistent, gpus)
    assert AgentConfig.from_line(config.to_line()) == config


@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=9) | json_values)
def test_any_other_json_is_a_protocol_error_or_a_configuration(data):
    try:
        config = AgentConfig.from_line(json.dumps(data).encode())
    except ProtocolError as error:
        assert str(error).startswith("not an agent configuration: ")
        return
    # Accepted: then it is a configuration whose fields have the types it declares.
    assert isinstance(config.broker_address, str) and isinstance(config.agent_id, str)
    assert isinstance(config.slots, int) and not isinstance(config.slots, bool)
    assert config.keys is None or isinstance(config.keys, CurveKeys)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"x", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"agent_id": "a", "slots": 1, "keys": null}', "no 'broker_address'"),
        (b'{"broker_address": "b", "agent_id": "a", "slots": 1}', "no 'keys'"),
        (b'{"broker_address": "b", "agent_id": "a", "slots": 1, "keys": null, "colour": 1}', "unknown key 'colour'"),
        (b'{"broker_address": "b", "agent_id": "a", "slots": "2", "keys": null}', "'slots' must be an integer, got \"2\""),
        (b'{"broker_address": "b", "agent_id": "a", "slots": 1, "keys": {"x": 1}}', "'keys' must be null or hold server_public, public, secret"),
    ],
)
def test_each_refusal_says_what_is_wrong(line, message):
    with pytest.raises(ProtocolError, match="^not an agent configuration: " + message.replace("(", r"\(")):
        AgentConfig.from_line(line)


def test_an_agent_started_with_a_file_that_is_no_configuration_names_it_and_the_fix(tmp_path):
    from tests.running import patas

    path = tmp_path / "agent.json"
    path.write_text('{"broker_address": "tcp://127.0.0.1:1", "agent_id": "a", "slots": 1}\n')
    path.chmod(0o600)
    run = patas("agent", "--config", str(path), cwd=tmp_path)
    assert (run.code, run.stderr) == (1, f"Error: {path}: not an agent configuration: no 'keys' (write one with `patas pool issue`)\n")
