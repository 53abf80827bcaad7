"""The run directory: its layout, its files, checkpoints and weights, all written atomically."""
