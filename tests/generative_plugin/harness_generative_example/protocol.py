"""``fresh-samples``: a protocol of kind ``samples`` (FID, KID, precision/recall and
memorisation score it, as they score every protocol of that kind)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.api import EvalContext, ProtocolOutput


@dataclass
class FreshSamplesConfig:
    n_samples: int = 500


class FreshSamples:
    kind = "samples"
    version = 1
    needs = ("sample",)
    Config = FreshSamplesConfig
    title = "Fresh samples (example plugin)"

    def __init__(self, config: FreshSamplesConfig | None = None) -> None:
        self.config = config or FreshSamplesConfig()

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        images = ctx.sample(self.config.n_samples, seed=ctx.seed + 1)  # not random-generation's
        return ProtocolOutput(data=images, preview=images[:64],
                              stamp={"n_samples": self.config.n_samples, "reference": "train"})
