"""The executors of ``harness benchmark`` without a cluster: options and their precedence,
what a job's end means (done / its own failure / killed: resubmit / killed too often), the
status table, and the ``srun`` rendezvous. The real-Slurm checks are in test_slurm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_error_line, cli, live_process

from harness.benchmark import executors
from harness.benchmark.executors import JobBook, SlurmExecutor, SlurmOptions, result_path
from harness.benchmark.suite_runner import RunSpec
from harness.errors import ConfigError
from harness.training.slurm_launch import adopt_srun_rendezvous, expand_hostlist, srun_rendezvous


def test_slurm_options_are_checked_and_become_sbatch_parameters() -> None:
    opts = SlurmOptions.from_table({"partition": "gpu", "time": 120, "gpus": 1, "cpus": 4,
                                    "mem": "16G", "array_parallelism": 8,
                                    "sbatch": ["--qos=low", "--exclusive"]}, "t")
    params = opts.submitit_parameters()
    assert params["partition"] == "gpu" and params["time"] == 120
    assert params["gpus_per_node"] == 1 and params["cpus_per_task"] == 4
    assert params["mem"] == "16G" and params["array_parallelism"] == 8
    assert params["additional_parameters"] == {"qos": "low", "exclusive": True}
    assert "gpus_per_node" not in SlurmOptions().submitit_parameters()
    for table, needle in [({"partitions": "x"}, "unknown key(s) ['partitions']"),
                          ({"time": 0}, "time must be an integer >= 1"),
                          ({"cpus": "4"}, "cpus must be an integer"),
                          ({"sbatch": ["qos=low"]}, "starting with --"),
                          ({"mem": ""}, "mem must be a non-empty string"),
                          ({"wait": "no"}, "wait must be true or false")]:
        with pytest.raises(ConfigError, match=None) as exc:
            SlurmOptions.from_table(table, "where")
        assert needle in str(exc.value) and str(exc.value).startswith("where")


def test_command_line_over_file_over_suite(tmp_path: Path) -> None:
    file = tmp_path / "cluster.toml"
    file.write_text('[executor]\nname = "slurm"\n[slurm]\npartition = "file"\ncpus = 2\n')
    suite = {"executor": {}, "slurm": {"partition": "suite", "time": 30}}
    pytest.importorskip("submitit")
    import shutil

    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not on PATH (apt-get install slurm-client)")
    ex = executors.choose_executor(suite, None, str(file), {"cpus": 3}, 1, "s")
    assert isinstance(ex, SlurmExecutor)
    assert (ex.options.partition, ex.options.time, ex.options.cpus) == ("file", 30, 3)
    assert ex.threads == 3
    local = executors.choose_executor(suite, "local", None, {}, 2, "s")
    assert isinstance(local, executors.LocalExecutor) and local.jobs == 2


def test_slurm_options_need_the_slurm_executor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--partition is a Slurm option"):
        executors.choose_executor({}, None, None, {"partition": "gpu"}, 1, "s")
    res = cli("benchmark", "paper-synthetic", "--partition", "gpu", "--out", str(tmp_path / "b"))
    assert_error_line(res, 2, "--partition is a Slurm option", "--executor slurm")
    assert not (tmp_path / "b").exists()  # refused before anything was written
    bad = tmp_path / "cluster.toml"
    bad.write_text('[executor]\nname = "pbs"\n')
    res = cli("benchmark", "paper-synthetic", "--executor-config", str(bad))
    assert_error_line(res, 2, "[executor] name must be one of local, slurm", "'pbs'")


def _spec(run_id: str = "bumps-ae-seed0") -> RunSpec:
    return RunSpec(run_id, "bumps", "ae", 0, "final", None, ["train.steps=2"])


def _book(out: Path, submissions: int) -> tuple[JobBook, dict]:
    book = JobBook(out / "slurm" / "jobs.json")
    book.jobs["bumps-ae-seed0"] = {"job_id": "7_0", "submissions": submissions,
                                   "log": "slurm/7_0/7_0_0_log.out"}
    return book, book.jobs["bumps-ae-seed0"]


def test_an_ended_job_is_done_its_own_failure_or_resubmitted(tmp_path: Path) -> None:
    ex = SlurmExecutor(SlurmOptions(max_requeues=2))
    spec = _spec()
    _, job = _book(tmp_path, 1)
    # no record and no metrics.json: killed by the cluster -> submit again (None)
    assert ex._ended(spec, tmp_path, job, "CANCELLED") is None
    job["submissions"] = 3  # killed more often than max_requeues: failed, with its log
    rec = ex._ended(spec, tmp_path, job, None)
    assert rec["status"] == "failed" and "killed by Slurm 3 time(s)" in rec["error"]
    assert rec["slurm_log"] == "slurm/7_0/7_0_0_log.out"
    # the job wrote a failed record: the run's own error, listed, never resubmitted
    path = result_path(tmp_path, spec.id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": spec.id, "status": "failed", "error": "Error: bad"}))
    job["submissions"] = 1
    rec = ex._ended(spec, tmp_path, job, "COMPLETED")
    assert rec["status"] == "failed" and rec["error"] == "Error: bad"
    assert rec["slurm_log"].endswith("log.out") and rec["job_id"] == "7_0"
    path.write_text(json.dumps({"id": spec.id, "status": "done", "wall_s": 1.5}))
    assert ex._ended(spec, tmp_path, job, "COMPLETED") == {"id": spec.id, "status": "done",
                                                          "wall_s": 1.5}


def _state(plan: list[dict], runs: dict[str, dict]) -> dict:
    """A benchmark.json holding ``plan`` and ``runs`` (records completed with their keys)."""
    records = {rid: {"dataset": "bumps", "model": rid.split("-")[1], "phase": "final", **rec}
               for rid, rec in runs.items()}
    return {"suite": {"name": "s"}, "budget": "smoke", "seeds": [0], "sets": [], "plan": plan,
            "runs": records}


def test_status_table_and_progress_line(tmp_path: Path) -> None:
    plan = [{"id": "bumps-ae-seed0"}, {"id": "bumps-vrrae-seed0"}, {"id": "bumps-vae-seed0"}]
    (tmp_path / "benchmark.json").write_text(json.dumps(_state(plan, {
        "bumps-vae-seed0": {"status": "failed", "error": "Error: no"}})))
    (tmp_path / "runs" / "bumps-vrrae-seed0").mkdir(parents=True)
    (tmp_path / "runs" / "bumps-vrrae-seed0" / "metrics.json").write_text("{}")
    rows = executors.status_rows(tmp_path)  # no jobs.json: no squeue call
    assert [(r["id"], r["status"]) for r in rows] == [
        ("bumps-ae-seed0", "new"), ("bumps-vrrae-seed0", "done"), ("bumps-vae-seed0", "failed")]
    text = executors.format_status(rows)
    assert text.splitlines()[0] == "1 done, 1 failed, 1 new" and "Error: no" in text
    book, _ = _book(tmp_path, 2)
    line = executors.progress_line({"bumps-ae-seed0": None}, book, {"7_0": "RUNNING"})
    assert line == "[slurm] 0 queued, 1 running, 0 done, 0 failed; running: 7_0 (bumps-ae-seed0)"
    assert executors.classify("PENDING") == "queued" and executors.classify(None) == "ended"
    assert executors.classify("TIMEOUT") == "ended" and executors.classify("COMPLETING") == "running"
    res = cli("benchmark", "status", str(tmp_path / "nowhere"))
    assert_error_line(res, 2, "not a benchmark directory")


def test_status_shows_why_slurm_holds_a_queued_job(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A job pending on a drained node said only "queued": squeue's reason is shown."""
    plan = [{"id": "bumps-ae-seed0"}]
    (tmp_path / "benchmark.json").write_text(json.dumps(_state(plan, {})))
    book, _ = _book(tmp_path, 1)
    book.save()
    calls = []

    def squeue(cmd, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(cmd)
        return executors.subprocess.CompletedProcess(
            cmd, 0, "7_0|PENDING|ReqNodeNotAvail, UnavailableNodes:node1\n8_0|RUNNING|None\n", "")

    monkeypatch.setattr(executors.subprocess, "run", squeue)
    rows = executors.status_rows(tmp_path)
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("queued", "ReqNodeNotAvail, UnavailableNodes:node1")]
    line = executors.format_status(rows).splitlines()[1]
    assert line.endswith("(waiting: ReqNodeNotAvail, UnavailableNodes:node1)"), line
    assert "%r" in calls[0][calls[0].index("-o") + 1]
    assert executors.queue_states(["7_0", "8_0"]) == {"7_0": "PENDING", "8_0": "RUNNING"}


def test_status_tells_a_run_in_progress_from_a_killed_one(tmp_path: Path) -> None:
    """A config and no results is ``running`` while a live process holds the run's lock, and
    ``interrupted`` once that process is gone (its lock is then stale)."""
    import platform

    plan = [{"id": "bumps-ae-seed0"}, {"id": "bumps-vae-seed0"}]
    (tmp_path / "benchmark.json").write_text(json.dumps(_state(plan, {})))
    runs = tmp_path / "runs"
    with live_process() as child:
        for run_id in ("bumps-ae-seed0", "bumps-vae-seed0"):
            (runs / run_id).mkdir(parents=True)
            (runs / run_id / "config.toml").write_text("")
        (runs / "bumps-ae-seed0" / ".harness.lock").write_text(
            f"{child.pid}@{platform.node()}\n")
        rows = executors.status_rows(tmp_path)
        assert [r["status"] for r in rows] == ["running", "interrupted"]
        assert executors.format_status(rows).splitlines()[0] == "1 interrupted, 1 running"
    assert [r["status"] for r in executors.status_rows(tmp_path)] == ["interrupted"] * 2


def test_hostlists_expand_like_scontrol() -> None:
    assert expand_hostlist("vm") == ["vm"]
    assert expand_hostlist("node[01-03,7],gpu5") == ["node01", "node02", "node03", "node7", "gpu5"]
    assert expand_hostlist("a[8-10]-ib") == ["a8-ib", "a9-ib", "a10-ib"]


def test_srun_variables_become_the_rendezvous() -> None:
    base = {"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3",
           "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_ID": "1234",
           "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}
    env = dict(base)
    found = adopt_srun_rendezvous(env)
    assert found == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                     "NODE_RANK": "1", "MASTER_ADDR": "gpu07",
                     "MASTER_PORT": str(20000 + (1234 * 31) % 20000)}
    assert env["RANK"] == "3"
    # a launcher's own variables win; one task, or a batch script outside srun: nothing
    kept = srun_rendezvous({**base, "RANK": "0", "MASTER_PORT": "1"})
    assert "RANK" not in kept and "MASTER_PORT" not in kept and kept["WORLD_SIZE"] == "4"
    assert srun_rendezvous({**base, "SLURM_STEP_NUM_TASKS": "1"}) == {}
    assert srun_rendezvous({k: v for k, v in base.items() if k != "SLURM_STEP_ID"}) == {}


def test_a_failing_squeue_resubmits_nothing(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """squeue failing (controller unreachable) is no evidence that a job ended: the
    executor stops with an error instead of submitting every run again."""
    calls = []

    def failing(cmd, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(cmd)
        return executors.subprocess.CompletedProcess(cmd, 1, "", "connect failure")

    monkeypatch.setattr(executors.subprocess, "run", failing)
    assert executors.queue_states(["7_0"]) is None and calls[0][0] == "squeue"
    book, _ = _book(tmp_path, 1)
    book.save()
    submitted = []
    ex = SlurmExecutor(SlurmOptions())
    monkeypatch.setattr(ex, "_submit", lambda *a, **k: submitted.append(a))
    with pytest.raises(executors.HarnessError, match="squeue failed"):
        ex.run([_spec()], tmp_path, True, lambda spec, rec: None)
    assert submitted == []


def test_a_suites_executor_tables_are_typed_and_checked_when_read(tmp_path: Path) -> None:
    """``[executor]``/``[slurm]`` belong to the suite schema: a bad key or value is refused
    when the suite is read, naming the suite, before any plan or folder exists."""
    from harness.benchmark.suite import Suite

    base = {"name": "s", "datasets": ["bumps"], "models": ["ae"]}
    suite = Suite.from_dict({**base, "executor": {"name": "slurm"},
                             "slurm": {"partition": "gpu", "time": 30}}, "s.toml")
    assert suite.executor == {"name": "slurm"} and suite.slurm["time"] == 30
    assert Suite.from_dict(base, "s.toml").slurm == {}
    for extra, needle in [({"slurm": {"time": 0}}, "slurm time must be an integer >= 1"),
                          ({"slurm": {"queue": "x"}}, "unknown key(s) ['queue']"),
                          ({"executor": {"name": "pbs"}}, "must be one of local, slurm"),
                          ({"slurm": "gpu"}, "'slurm' must be a table")]:
        with pytest.raises(ConfigError) as exc:
            Suite.from_dict({**base, **extra}, "s.toml")
        assert needle in str(exc.value) and "suite 's.toml'" in str(exc.value)


def test_the_slurm_folder_belongs_to_the_benchmark_directory(tmp_path: Path) -> None:
    """A benchmark continued after ``--executor slurm`` holds ``slurm/``: still its own
    folder (continued), while a folder of the user's is still refused."""
    from harness.benchmark import directory as bdir
    from harness.errors import HarnessError

    (tmp_path / "runs").mkdir()
    (tmp_path / executors.SLURM_DIR / "results").mkdir(parents=True)
    bdir.check_folder(tmp_path)  # no error
    (tmp_path / "notes").mkdir()
    with pytest.raises(HarnessError, match="'notes'"):
        bdir.check_folder(tmp_path)
