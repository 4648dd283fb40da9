"""Agents on machines reached over SSH: connect (paramiko), probe, ship the agent, start it."""
