"""difflab.cli."""
