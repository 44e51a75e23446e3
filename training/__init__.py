"""The one fit / evaluate / predict path, its callbacks, and backend selection."""
