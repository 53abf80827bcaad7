"""Results that travel between labs: versioned tasks (:mod:`.tasks`), one result schema and
its validation (:mod:`.validation`), result documents read from runs, benchmarks and exports
(:mod:`.documents`), ``harness diff`` (:mod:`.diff`), ``harness export`` (:mod:`.export`) and
``harness leaderboard`` (:mod:`.leaderboard`). See docs/results.md."""
