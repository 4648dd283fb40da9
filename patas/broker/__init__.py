"""The coordinator's runtime: plan the work, schedule it onto agents, write what comes back.

`scheduler` holds the queue, leases and retries as plain logic (no sockets, no disk) so it can be
tested on its own; `transport` wraps the ZeroMQ socket; `outputs` writes task output into the
pataslab; `coordinator` runs the loop that ties them together; `launcher` starts agents.
"""
