"""One run of a sweep: plan it, schedule its tasks onto agents, commit what comes back.

`scheduler` holds the queue, leases and retries as plain logic (no sockets, no disk) so it can be
tested on its own; `outputs` and `committer` write task output into the pataslab; `coordinator`
runs the loop that ties them together; `exploration` prepares a run from its definition.
"""
