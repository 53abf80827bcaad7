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


class _Flat(torch.nn.Module):
    """Codes = the first two pixels; decoding paints the first code over the whole image, so a
    decoded endpoint differs from its input and each column can be told apart."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :1, None, None].expand(-1, 1, 28, 28)


def _interpolation(n_pairs: int = 3, n_interp: int = 4) -> tuple:  # type: ignore[type-arg]
    from harness_plugins.datasets._common import ArrayDataset
    from harness_plugins.protocols.paper import (
        Interpolation,
        InterpolationConfig,
        interpolation_pairs,
    )

    from harness.api import DatasetInfo, DataSplits, EvalContext

    images = np.random.default_rng(0).random((10, 1, 28, 28)).astype(np.float32)
    data = ArrayDataset(images, np.full(10, -1))
    splits = DataSplits(DatasetInfo("toy", (1, 28, 28)), data, data)
    out = Interpolation(InterpolationConfig(n_pairs=n_pairs, n_interp=n_interp)).run(
        EvalContext(_Flat(), splits, seed=0))
    a, b = interpolation_pairs(10, n_pairs, 0)
    return out, torch.from_numpy(images), a, b


def test_the_interpolation_picture_labels_its_columns_and_frames_the_inputs() -> None:
    out, *_ = _interpolation()
    labels = out.preview_labels
    assert labels is not None and out.preview_nrow == 8
    assert labels.col_labels == ["input A", "D(E(A))", "t=1/5", "t=2/5", "t=3/5", "t=4/5",
                                 "D(E(B))", "input B"]
    assert labels.marked_cols == [0, 7] and labels.row_labels == ["pair 1", "pair 2", "pair 3"]


def _ink_height(band: np.ndarray) -> int:
    """Rows spanned by the lowest line of dark text in ``band`` (a label above or beside a
    tile; a title higher up is a separate block)."""
    rows = np.nonzero((band < 128).all(axis=2).any(axis=1))[0]
    if not rows.size:
        return 0
    start = rows.size - 1
    while start and rows[start - 1] == rows[start] - 1:
        start -= 1
    return int(rows[-1] - rows[start] + 1)


def test_the_saved_interpolation_picture_shows_the_inputs_at_its_ends(tmp_path: Path) -> None:
    """Read back from the PNG alone: the end tiles of each row are the input images' 8-bit
    pixels (integer upscale), the labels are 16 px type, and the default strip (5 points)
    fits a 1280 px page at 1:1."""
    from PIL import Image

    from harness.evaluation.figures import LABEL_SIZE, grid_tiles

    out, images, a, b = _interpolation()
    path = save_labelled_grid(out.preview, tmp_path / "interpolation.png", out.preview_nrow,
                              out.preview_labels)
    picture = np.asarray(Image.open(path).convert("RGB"))
    tiles, layout = grid_tiles(path)
    scale, boxes = layout["scale"], layout["tiles"]
    assert layout["nrow"] == 8 and len(boxes) == 24 and scale >= 2
    eight_bit = (images * 255).round().to(torch.uint8).numpy()[:, 0]
    for r in range(3):
        for column, index in ((0, a[r]), (7, b[r])):
            x, y, w, h = boxes[8 * r + column]
            shown = picture[y : y + h, x : x + w]
            assert np.array_equal(shown, np.kron(eight_bit[index][:, :, None],
                                                 np.ones((scale, scale, 3), np.uint8)))
            assert np.array_equal(tiles[8 * r + column][:, :, 0], eight_bit[index])
        x, y, w, h = boxes[8 * r + 1]  # D(E(A)): one flat grey, not the input
        assert len(np.unique(picture[y : y + h, x : x + w])) == 1
    x0, y0, w0, h0 = boxes[0]
    x1 = boxes[1][0]
    assert _ink_height(picture[: y0 - 2, x1 : x1 + w0]) >= 14  # "D(E(A))": 16 px type (was 11)
    assert _ink_height(picture[y0 : y0 + h0, : x0 - 4]) >= 14  # "pair 1"
    assert LABEL_SIZE >= 16
    default, *_ = _interpolation(n_interp=5)
    wide = labelled_grid(default.preview, default.preview_nrow, default.preview_labels)
    assert wide.size[0] <= 1280


def test_a_png_without_a_layout_gives_no_tiles(tmp_path: Path) -> None:
    from PIL import Image

    from harness.evaluation.figures import grid_tiles

    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert grid_tiles(tmp_path / "plain.png") is None
