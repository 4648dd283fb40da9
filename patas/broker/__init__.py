"""The coordinator's side: plan the work, start agents, hand out tasks, write what comes back.

    run/       the run loop: plan, scheduler (queue, leases, retries), committer, outputs, halt
    launch/    the one interface every way of starting agents implements (`NodeSession`)
    local/     agents on this machine              (a launcher)
    ssh/       agents on machines reached over SSH (a launcher): connect, ship, start, tunnel
    pools/     long-lived agents that serve run after run, lent to runs by a daemon
    transport  the ZeroMQ socket the broker listens on; security: CURVE keys and authentication
"""
