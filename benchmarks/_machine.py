"""What every benchmark script writes with its results: the machine description (the
harness's own, :func:`harness.benchmark.suite_runner.machine`, also in every benchmark report,
plus the torch thread count the timings ran with), the command and load line at the top of a
results page, and the one way results are written (atomically, JSON beside Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU and versions: what a reader needs to compare figures."""
    import torch

    from harness.benchmark.suite_runner import machine as harness_machine

    return {**harness_machine(), "torch_threads": torch.get_num_threads()}


def command_line(doc: dict[str, Any], *notes: str) -> str:
    """The second line of a results page: the command, the load average around it (the
    machines are shared), then ``notes`` (steps, threads, repeats)."""
    return "; ".join([f"Command: `{doc['command']}`",
                      f"load average {doc['load_average_at_start']:.1f} at the start, "
                      f"{doc['load_average_at_end']:.1f} at the end", *notes]) + ".\n"


def write_results(path: Path, doc: dict[str, Any], markdown: str | None = None) -> None:
    """``path``.json (and ``path``.md when ``markdown`` is given), each written atomically:
    an interrupted benchmark never leaves half a results file behind."""
    from harness.rundir.atomic import atomic_write_json, atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path.with_suffix(".json"), doc)
    if markdown is not None:
        atomic_write_text(path.with_suffix(".md"), markdown)
