"""``harness benchmark``: suites of runs, the folder that holds them, where they run (a local pool or Slurm) and their report."""
