"""Two CPU processes (gloo, through Accelerate) at per-process batch B/2 train exactly like one
process at batch B: same loss every step, same final weights, same rrae inference basis.

For the rrae family this holds only because the SVD sees the *global* batch (the models
gather their latents), likewise for lorae's nuclear norm and wae's MMD; for ae/vae (and the
per-sample means of rae) because every sum goes through ``ctx.all_reduce_sum``.
The two runs use the same config (``train.batch_size`` is the global batch); only the
number of processes differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
SCRIPT = HERE / "dist_train.py"
MODELS = ("ae", "vae", "rrae", "vrrae", "lorae", "wae", "rae")


def _run(cmd: list[str], timeout: int = 240) -> subprocess.Popen:
    # CPU processes (gloo) even where there is a GPU: two processes on one GPU cannot use
    # NCCL, and the comparison is with a one-process CPU run
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait(proc: subprocess.Popen, what: str) -> None:
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-4000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # torchrun, run by this very interpreter (a `torchrun` on PATH may belong to another one)
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    base = tmp_path_factory.mktemp("dist")
    one, two = base / "one", base / "two"
    # both at once: the launches' start-up dominates and overlaps well on two cores
    p1 = _run([sys.executable, str(SCRIPT), "--out", str(one)])
    p2 = _run([*torchrun, "--standalone", "--nproc_per_node", "2", str(SCRIPT),
               "--out", str(two)])
    _wait(p1, "one-process run")
    _wait(p2, "two-process run")
    return one, two


@pytest.mark.distributed
@pytest.mark.parametrize("model", MODELS)
def test_two_processes_train_like_one(runs: tuple[Path, Path], model: str) -> None:
    one, two = runs
    a = json.loads((one / model / "losses.json").read_text())
    b = json.loads((two / model / "losses.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert len(a["losses"]) == len(b["losses"]) == 10
    for step, (la, lb) in enumerate(zip(a["losses"], b["losses"], strict=True), start=1):
        assert la.keys() == lb.keys()
        for part in la:
            assert lb[part] == pytest.approx(la[part], rel=1e-4, abs=1e-5), (step, part)
    w1 = load_file(str(one / model / "weights-rank0.safetensors"))
    w2 = [load_file(str(two / model / f"weights-rank{r}.safetensors")) for r in range(2)]
    for name, ref in w1.items():
        # the two processes hold identical models (DDP + identical calibration) ...
        assert torch.equal(w2[0][name], w2[1][name]), name
        # ... equal to the one-process model within float tolerance
        torch.testing.assert_close(w2[0][name], ref, rtol=1e-4, atol=1e-5, msg=name)
    if model in ("rrae", "vrrae"):
        assert bool(w1["calibrated"]) and bool(w2[0]["calibrated"])
        # the inference basis spans the same subspace, column by column (signs fixed)
        torch.testing.assert_close(w2[0]["basis"], w1["basis"], rtol=1e-4, atol=1e-5)
    # the two-process run wrote one shared set of checkpoints
    ckpts = sorted(p.name for p in (two / model / "run" / "checkpoints").iterdir())
    assert ckpts == ["latest", "step-0000008", "step-0000010"]
    assert {p.name for p in (two / model / "run" / "checkpoints" / "step-0000010").iterdir()
            if p.name.startswith("rng-")} == {"rng-rank0.json", "rng-rank0.safetensors",
                                             "rng-rank1.json", "rng-rank1.safetensors"}


@pytest.mark.distributed
def test_single_process_accelerator_in_a_two_process_launch_is_refused(runs):
    """Accelerate 1.x without cpu=True on a CPU-only torchrun launch reports one process and
    would train without DDP; the trainer refuses it with a message saying what to do. Accelerate
    0.x (the lowest bound) sees both processes there, and the trainer accepts it."""
    guard = json.loads((runs[1] / "guard.json").read_text())
    assert guard["world"] == 2
    if guard["seen"] == 1:
        assert "2 processes but Accelerate sees 1" in guard["refused"]
        assert "cpu=True" in guard["refused"]
    else:
        assert guard == {"seen": 2, "world": 2, "refused": None}


@pytest.mark.distributed
def test_ctrl_c_on_one_process_stops_all_at_one_step_and_resumes(runs):
    """The signal reaches only the last process; every process stops after the same step,
    one checkpoint is written, and resuming reaches the uninterrupted run's weights."""
    for run in runs:
        stopped, start = (run / "vrrae-ctrl-c" / "stopped_at.txt").read_text().split()
        assert (stopped, start) == ("step-0000006", "6")
        full = load_file(str(run / "vrrae" / "weights-rank0.safetensors"))
        for rank in range(2 if run == runs[1] else 1):
            resumed = load_file(str(run / "vrrae-ctrl-c" / f"weights-rank{rank}.safetensors"))
            for name, ref in full.items():
                torch.testing.assert_close(resumed[name], ref, rtol=0, atol=0, msg=name)
