"""A valid journal record, as JSON fields, for tests that damage one field at a time."""

RECORD = {
    "task_id": 0, "key": "k", "attempt": 1, "outcome": "done", "exit_code": 0, "combination_id": 0,
    "repeat_id": 0, "values": {"x": "1"}, "experiment_id": 0, "experiment_name": "grid", "max_tries": 3,
    "started_at": 1.0, "ended_at": 2.0, "cluster_name": "cluster", "node_name": "node0",
    "hostname": "localhost", "cluster_in_lab": 0, "node_in_lab": 0, "node_in_cluster": 0,
    "worker_in_lab": 0, "worker_in_cluster": 0, "worker_in_node": 0, "work_dir": "/tmp",
}  # fmt: skip
