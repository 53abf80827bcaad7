"""The use cases, above every other floor of the host: what ``harness run``, ``--resume`` and
``harness evaluate`` do, independent of the command line, for the CLI, the benchmark and
Python callers alike.

* :mod:`~harness.run.build`: the configuration, the data and the model of a run;
* :mod:`~harness.run.preflight`: every check that needs the data and the model, before the
  first write;
* :mod:`~harness.run.resume`: the configuration a ``--resume`` continues with;
* :mod:`~harness.run.experiment`: train, evaluate and record one run;
* :mod:`~harness.run.scoring`: evaluate a model into its run folder (metrics.json, grids,
  trackers);
* :mod:`~harness.run.reevaluate`: ``harness evaluate`` of a saved run.

Lower floors never import this package (``tests/test_import_floors.py``).
"""
