"""Pictures that label themselves (harness.evaluation.figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.api import GridLabels
from harness.evaluation.figures import (
    BORDER,
    GAP,
    MARK,
    MIN_TILE,
    labelled_grid,
    save_labelled_grid,
)


def test_tiles_are_framed_and_marked_columns_coloured() -> None:
    images = torch.zeros(6, 1, 8, 8)  # black tiles: frames and labels are what is not black
    grid = np.asarray(labelled_grid(images, 3, GridLabels(marked_cols=[0])))
    step = MIN_TILE + GAP
    assert grid.shape == (GAP + 2 * step + GAP, GAP + 3 * step + GAP, 3)
    x0 = y0 = GAP
    assert tuple(grid[y0 + 5, x0 + 5]) == (0, 0, 0)  # inside the first tile
    assert tuple(grid[y0 - 2, x0 + 5]) == MARK  # column 0 is marked
    assert tuple(grid[y0 - 1, x0 + step + 5]) == BORDER  # column 1: the plain frame
    assert MARK not in {tuple(p) for p in grid[:, x0 + step + 5]}


def test_title_and_labels_make_room_and_are_drawn(tmp_path: Path) -> None:
    images = torch.rand(8, 3, 28, 28)
    labels = GridLabels(title="Interpolation", col_labels=["start", "t=1/3", "t=2/3", "end"],
                        row_labels=["pair 1", "pair 2"], marked_cols=[0, 3])
    plain = labelled_grid(images, 4)
    grid = labelled_grid(images, 4, labels)
    assert grid.size[0] > plain.size[0] and grid.size[1] > plain.size[1] + 30
    arr = np.asarray(grid)
    assert (arr[:18] < 100).any()  # the title is written (dark pixels in the top band)
    assert (arr[:, :30] < 100).any()  # the row labels on the left
    path = save_labelled_grid(images, tmp_path / "sub" / "g.png", 4, labels)
    assert [p.name for p in path.parent.iterdir()] == ["g.png"]


def test_the_interpolation_preview_marks_its_real_endpoints() -> None:
    from harness_plugins.datasets._common import ArrayDataset
    from harness_plugins.protocols.paper import Interpolation, InterpolationConfig

    from harness.api import DatasetInfo, DataSplits, EvalContext

    class Flat(torch.nn.Module):  # codes = the first two pixels; decoding repeats them
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :2]

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return z[:, :1, None, None].expand(-1, 1, 4, 4)

    images = np.random.default_rng(0).random((10, 1, 4, 4)).astype(np.float32)
    data = ArrayDataset(images, np.full(10, -1))
    splits = DataSplits(DatasetInfo("toy", (1, 4, 4)), data, data)
    out = Interpolation(InterpolationConfig(n_pairs=3, n_interp=4)).run(
        EvalContext(Flat(), splits, seed=0))
    labels = out.preview_labels
    assert labels is not None and out.preview_nrow == 6
    assert labels.col_labels == ["start", "t=1/5", "t=2/5", "t=3/5", "t=4/5", "end"]
    assert labels.marked_cols == [0, 5] and labels.row_labels == ["pair 1", "pair 2", "pair 3"]
    # the marked columns hold the real training images, the others decoded codes
    first = out.preview[0, 0]
    assert any(torch.equal(first, torch.from_numpy(im[0])) for im in images)
