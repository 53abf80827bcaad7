"""``harness benchmark --executor slurm`` and ``srun harness run`` against a real Slurm: a
one-node cluster on localhost (tests/slurm_cluster.py) started for this module and stopped
after it, daemon by daemon.

* the benchmark runs as a job array; one of its jobs is killed mid-run (``scancel
  --signal=KILL``, after its first checkpoint): the benchmark submits it again, it resumes
  from that checkpoint and ends with exactly the weights of an uninterrupted run;
* ``srun -n 2 harness run`` trains one model with two processes, the same weights as
  ``torchrun --nproc_per_node 2`` gives.

Skips (saying why) where a cluster cannot be started: not root, or Slurm/munge missing
(``apt-get install slurm-wlm munge``). Minutes on a loaded 2-core machine, hence the
``slurm`` marker; ``.ci/run`` runs ``pytest -m slurm`` as a step of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from slurm_cluster import Cluster, why_not

pytestmark = pytest.mark.slurm

TINY = ["--set", "train.batch_size=16", "--set", "data.n_train=64", "--set", "data.n_test=16",
        "--set", "train.log_every=1"]
BENCH_SETS = ["--set", "train.steps=16", "--set", "train.checkpoint_every=2",
              "--set", "eval.random-generation.n_samples=16", "--set",
              "eval.random-generation.gmm_components=2", "--set", "eval.interpolation.n_pairs=2",
              "--set", "models=ae,vrrae"]
KILLED = "bumps-vrrae-seed0"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    why = why_not()
    if why:
        pytest.skip(f"no test Slurm cluster here: {why}")
    pytest.importorskip("submitit", reason="pip install 'vrrae-harness[slurm]'")
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()
        alive = [n for n, pid in c.pids.items() if _alive(pid)]
        assert not alive and not c._stepds(), f"still running after stop: {alive}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def _env(c: Cluster) -> dict[str, str]:
    return {**c.env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}


def _wait_for(ok, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the benchmark exited ({proc.returncode}) first:\n"
                                 + proc.stdout.read()[-4000:])  # type: ignore[union-attr]
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def test_killed_job_is_resubmitted_and_ends_with_the_uninterrupted_weights(
        cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    config = tmp_path / "cluster.toml"
    config.write_text('[executor]\nname = "slurm"\n[slurm]\npoll = 1\ntime = 20\ncpus = 1\n')
    proc = subprocess.Popen(
        _harness("benchmark", "paper-synthetic", "--budget", "smoke", "--seeds", "1",
                 "--executor-config", str(config), "--out", str(out), *TINY, *BENCH_SETS),
        env=_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = out / "runs" / KILLED
    try:
        # mid-run: a checkpoint on disk, the training not finished
        _wait_for(lambda: (run_dir / "checkpoints" / "latest").is_file(), 400,
                  "the first checkpoint", proc)
        assert not (run_dir / "metrics.json").is_file(), "the run ended before the kill"
        first = json.loads((out / "slurm" / "jobs.json").read_text())[KILLED]
        subprocess.run(["scancel", "--signal=KILL", first["job_id"]], env=cluster.env,
                       check=True)
        log, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log[-4000:] + cluster.logs()
    assert f"[{KILLED}] job {first['job_id']} ended" in log and "resubmitted" in log
    assert "queued" in log and "running" in log  # the progress lines
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert jobs[KILLED]["submissions"] == 2 and jobs[KILLED]["job_id"] != first["job_id"]
    assert jobs["bumps-ae-seed0"]["submissions"] == 1  # never resubmitted
    assert first["job_id"].split("_")[0] == jobs["bumps-ae-seed0"]["job_id"].split("_")[0]
    state = json.loads((out / "benchmark.json").read_text())
    assert {r["status"] for r in state["runs"].values()} == {"done"}
    assert state["runs"][KILLED]["command"][:2] == ["run", "--resume"]  # continued
    assert state["executor"]["name"] == "slurm" and (out / "report.md").is_file()
    assert (out / jobs[KILLED]["log"]).is_file()  # the job's log, in the benchmark folder

    # the same run uninterrupted, here: bit for bit the same weights
    spec = next(s for s in state["plan"] if s["id"] == KILLED)
    ref = tmp_path / "ref"
    cmd = _harness("run", "--model", spec["model"], "--dataset", spec["dataset"], "--seed",
                   str(spec["seed"]), "--out", str(ref), "--no-eval")
    for item in spec["sets"]:
        cmd += ["--set", item]
    done = subprocess.run(cmd, env=_env(cluster), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    resumed, uninterrupted = load_file(str(run_dir / "model.safetensors")), load_file(
        str(ref / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name

    # status after the fact, from the files and squeue
    status = subprocess.run(_harness("benchmark", "status", str(out)), env=_env(cluster),
                            capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == "2 done"
    assert f"job {jobs[KILLED]['job_id']} (x2)" in status.stdout


def test_two_task_srun_trains_like_two_local_processes(cluster: Cluster, tmp_path: Path) -> None:
    args = ["--model", "vrrae", "--dataset", "bumps", "--seed", "0", "--no-eval",
            "--set", "train.steps=4", "--set", "train.checkpoint_every=100", *TINY]
    srun_dir, local_dir = tmp_path / "srun", tmp_path / "local"
    srun = subprocess.Popen(["srun", "-n", "2", "--cpus-per-task", "1", "--kill-on-bad-exit=1",
                             *_harness("run", "--out", str(srun_dir), *args)],
                            env=_env(cluster), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    local = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2", "-m", "harness.cli", "run", "--out",
                            str(local_dir), *args], env=_env(cluster), capture_output=True,
                           text=True, timeout=600)
    srun_out, _ = srun.communicate(timeout=600)
    assert srun.returncode == 0, srun_out[-4000:] + cluster.logs()
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    for run in (srun_dir, local_dir):
        assert json.loads((run / "environment.json").read_text())["num_processes"] == 2
    a, b = load_file(str(srun_dir / "model.safetensors")), load_file(
        str(local_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for name, tensor in b.items():
        assert torch.equal(a[name], tensor), name
