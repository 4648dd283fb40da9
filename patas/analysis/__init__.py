"""Analysis of a sweep's outputs, on the coordinator: parse (regex → table), query (SQL), draw (plots).

Modules: `parse` (with `patterns`, `scan`, `table`), `query` (with `formats`), `draw` (with
`changes`), `task_output` (a task's output, followed as it runs: `patas logs`). Heavy libraries
(pandas, duckdb, seaborn, matplotlib) are imported only where used.
"""
