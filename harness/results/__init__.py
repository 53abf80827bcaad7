"""Results that travel between labs: versioned tasks (:mod:`.tasks`), one result schema
(:mod:`.schema`), ``harness diff`` (:mod:`.diff`), ``harness export`` (:mod:`.export`) and
``harness leaderboard`` (:mod:`.leaderboard`). See docs/results.md."""
