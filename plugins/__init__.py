"""Built-in plugins of vrrae-harness, registered through the `harness` entry-point group."""
