"""Agents on the coordinator's own machine (a launcher)."""
