"""``mean-intensity``: the smallest metric that follows :class:`harness.api.Metric`."""

from __future__ import annotations

from typing import Any

from harness.api import DatasetInfo


class MeanIntensity:
    """The mean pixel value of the generated images: a quick diagnostic (a model that
    collapsed to black images scores 0). Lower is not really better; the harness needs a
    direction for its tables."""

    name = "mean-intensity"
    higher_is_better = False
    inputs = ("samples",)  # generated images, whichever protocol made them

    def applies(self, info: DatasetInfo) -> bool:
        return True

    def __call__(
        self, images: Any, reference: Any, info: DatasetInfo, *, device: Any = None
    ) -> dict[str, float]:
        return {"mean_intensity": float(images.float().mean())}
