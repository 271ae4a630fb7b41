"""difflab.config."""
