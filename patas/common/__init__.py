"""What the coordinator and the agents share: protocol, configuration, sweep, errors.

Everything below this package imports only the standard library and msgpack, because the agent
(which is shipped to nodes) depends on it.
"""
