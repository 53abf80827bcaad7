"""Image grids that label themselves: a title, row and column labels, a border round every
tile, and marked tiles (e.g. the endpoints of an interpolation) framed in colour.

One helper for every picture the harness writes: the run's ``images/<protocol>.png``, the
images sent to trackers and the benchmark report's figures. Images are (N, C, H, W) floats
already on the display scale [0, 1] (:func:`harness.evaluation.evaluate.to_display`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.api import GridLabels

GAP = 3  # pixels between tiles
BORDER = (150, 150, 150)  # every tile's frame
MARK = (230, 120, 0)  # the frame of marked tiles
MIN_TILE = 48  # small images (28 px) are scaled up so the labels do not dwarf them


def font(size: int) -> Any:
    """Pillow's own scalable font (10.1 and newer): nothing to install, and ``textbbox``
    measures it (Pillow 9's fixed bitmap font refused to be measured)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_width(draw: Any, text: str, font: Any) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _tiles(images: Any) -> tuple[Any, int]:
    """uint8 (N, H, W, 3) tiles, scaled up by an integer factor to at least MIN_TILE px."""
    import numpy as np

    arr = (images.detach().float().cpu().clamp(0, 1) * 255).round().byte().numpy()
    arr = np.repeat(arr, 3, axis=1) if arr.shape[1] == 1 else arr[:, :3]
    arr = arr.transpose(0, 2, 3, 1)
    scale = max(1, math.ceil(MIN_TILE / max(1, arr.shape[1])))
    return arr.repeat(scale, axis=1).repeat(scale, axis=2), scale


def labelled_grid(images: Any, nrow: int, labels: GridLabels | None = None) -> Any:
    """The grid as a PIL RGB image: ``nrow`` images per row, a 1-pixel frame round every
    tile, a 2-pixel coloured frame round the tiles of ``labels.marked_cols`` /
    ``marked_rows``, the title on top, column labels above, row labels on the left."""
    from PIL import Image, ImageDraw

    labels = labels or GridLabels()
    tiles, _ = _tiles(images)
    n, th, tw = tiles.shape[0], tiles.shape[1], tiles.shape[2]
    ncol, rows = max(1, nrow), max(1, math.ceil(n / max(1, nrow)))
    label_font, title_font = font(12), font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max([_text_width(probe, t, label_font) for t in labels.row_labels] or [0])
    left = left + 8 if left else GAP
    top = (22 if labels.title else 0) + (18 if labels.col_labels else 0) + GAP
    width = max(left + ncol * (tw + GAP) + GAP,
                _text_width(probe, labels.title, title_font) + 2 * GAP)
    canvas = Image.new("RGB", (width, top + rows * (th + GAP) + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    if labels.title:
        draw.text((GAP, 3), labels.title, fill="black", font=title_font)
    for c, text in enumerate(labels.col_labels[:ncol]):
        x = left + c * (tw + GAP) + (tw - _text_width(draw, text, label_font)) // 2
        draw.text((max(0, x), top - 17), text, fill=MARK if c in labels.marked_cols
                  else "black", font=label_font)
    for r, text in enumerate(labels.row_labels[:rows]):
        draw.text((GAP, top + r * (th + GAP) + th // 2 - 7), text, fill="black", font=label_font)
    for i in range(n):
        r, c = divmod(i, ncol)
        x, y = left + c * (tw + GAP), top + r * (th + GAP)
        canvas.paste(Image.fromarray(tiles[i]), (x, y))
        marked = c in labels.marked_cols or r in labels.marked_rows
        draw.rectangle((x - 1, y - 1, x + tw, y + th), outline=BORDER)
        if marked:
            draw.rectangle((x - 2, y - 2, x + tw + 1, y + th + 1), outline=MARK, width=2)
    return canvas


def save_labelled_grid(images: Any, path: str | Path, nrow: int,
                       labels: GridLabels | None = None) -> Path:
    """Write :func:`labelled_grid` as a PNG, atomically."""
    from harness.rundir.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        labelled_grid(images, nrow, labels).save(tmp, format="PNG")
    return path


def grid_array(images: Any, nrow: int, labels: GridLabels | None = None) -> Any:
    """:func:`labelled_grid` as a uint8 (H, W, 3) array (for trackers, matplotlib)."""
    import numpy as np

    return np.asarray(labelled_grid(images, nrow, labels))
