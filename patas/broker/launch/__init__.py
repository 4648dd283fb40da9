"""What every way of starting agents provides: a `NodeSession` per node that starts its agent."""
