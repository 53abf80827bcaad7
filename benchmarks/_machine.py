"""The machine description every benchmark writes at the top of its results: the harness's
own (:func:`harness.benchmark.suite_runner.machine`, also in every benchmark report), plus the torch thread
count the timings ran with."""

from __future__ import annotations

from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU and versions: what a reader needs to compare figures."""
    import torch

    from harness.benchmark.suite_runner import machine as harness_machine

    return {**harness_machine(), "torch_threads": torch.get_num_threads()}
