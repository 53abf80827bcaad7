"""Start-up: what ``harness run`` imports before it trains. Each module listed costs a sizeable
part of an ``import torch`` (measured in ``benchmarks/results/startup_cpu.json``); an eager run
with the default optimizer needs none of them to train."""

from __future__ import annotations

import subprocess
import sys

#: imported by torch.compile, Accelerate's checks for compiled or DTensor models, and
#: pytorch-optimizer; or by evaluation only
HEAVY = ("torch._dynamo", "sympy", "torch.distributed.tensor", "pytorch_optimizer",
         "sklearn", "scipy", "matplotlib", "torchvision", "torchmetrics", "datasets")

RUN = """
import sys
from harness.cli import main
try:
    main(["run", "--model", "vrrae", "--set", "train.steps=2", "--no-eval", "--out", {out!r}])
except SystemExit as exc:
    assert not exc.code, exc.code
print(" ".join(m for m in {heavy!r} if m in sys.modules) or "none")
"""


def test_a_training_run_imports_nothing_heavy(tmp_path) -> None:
    code = RUN.format(out=str(tmp_path / "run"), heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "none"
    assert (tmp_path / "run" / "model.safetensors").is_file()
