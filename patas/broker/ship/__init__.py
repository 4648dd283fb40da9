"""Shipping the user's code to the nodes (`--ship`): a content-addressed snapshot, each node's
cache of it, and the transfer of only what a node lacks."""
