"""The agent: runs tasks on a node and streams their output to the broker.

This package is shipped to nodes, so it imports only the standard library, pyzmq, msgpack and
`patas.common`'s protocol and errors: nothing heavy.
"""
