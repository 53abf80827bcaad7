"""Where an evaluation's time goes: ``evaluate(seconds=...)`` records each protocol's own run
and each metric that scored it, ``harness run`` keeps it in metrics.json
(``evaluation_seconds``) and the summary prints it (harness.evaluation.display.cost_lines)."""

from __future__ import annotations

import time

import torch

from harness.api import DatasetInfo, DataSplits, ProtocolOutput
from harness.configuration.run_config import EvalConfig
from harness.evaluation import display
from harness.evaluation.evaluate import evaluate


class _Slow:
    """A protocol that takes 0.2 s and produces samples."""

    kind = "samples"

    def run(self, ctx):  # type: ignore[no-untyped-def]
        time.sleep(0.2)
        return ProtocolOutput(data=torch.zeros(4, 1, 2, 2))


class _Metric:
    inputs = ("samples",)

    def __init__(self, pause: float) -> None:
        self.pause = pause

    def __call__(self, images, reference, info, *, device=None):  # type: ignore[no-untyped-def]
        time.sleep(self.pause)
        return {"score": 1.0}


def test_seconds_per_protocol_and_metric_are_recorded_and_shown() -> None:
    data = torch.utils.data.TensorDataset(torch.zeros(4, 1, 2, 2))
    splits = DataSplits(train=data, test=data, info=DatasetInfo("toy", (1, 2, 2)))
    seconds: dict[str, dict[str, float]] = {}
    evaluate(torch.nn.Identity(), splits, EvalConfig(), seed=0,
             protocols=[("slow", _Slow())],
             metrics=[("quick", _Metric(0.0)), ("dear", _Metric(0.3))],
             progress=False, seconds=seconds)
    assert list(seconds) == ["slow"] and list(seconds["slow"]) == ["protocol", "quick", "dear"]
    assert 0.2 <= seconds["slow"]["protocol"] < seconds["slow"]["dear"]
    assert 0.3 <= seconds["slow"]["dear"] and seconds["slow"]["quick"] < 0.3
    lines = display.cost_lines({"evaluation_seconds": seconds})
    assert lines[0] == "  evaluation time (s):"
    total = sum(seconds["slow"].values())
    assert lines[1].split()[:2] == ["slow", f"{total:.1f}"], lines
    assert "(run 0.2, quick 0.0, dear 0.3)" in lines[1], lines
    assert display.cost_lines({"results": []}) == []  # a metrics.json from before: no line
