"""A run's configuration: its sections, their checks, and the preflight plan."""
