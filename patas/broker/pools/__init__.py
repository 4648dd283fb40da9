"""Long-lived agent pools: a daemon holds the agents and lends them to runs."""
