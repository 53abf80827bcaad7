"""Image grids that label themselves: a title, row and column labels, a border round every
tile, and marked tiles (e.g. the input images of an interpolation) framed in colour.

One helper for every picture the harness writes: the run's ``images/<protocol>.png``, the
images sent to trackers and the benchmark report's figures. Images are (N, C, H, W) floats
already on the display scale [0, 1] (:func:`harness.evaluation.evaluate.to_display`).

A grid written by :func:`save_labelled_grid` carries its layout (labels, the box of every
tile, the upscale factor) in a PNG text chunk, so :func:`grid_tiles` gives back the 8-bit
pixels of each tile: the benchmark report builds its figures from what the runs drew, without
the model or the dataset.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from harness.api import GridLabels

GAP = 3  # pixels between tiles
BORDER = (150, 150, 150)  # every tile's frame
MARK = (230, 120, 0)  # the frame of marked tiles
MIN_TILE = 48  # small images (28 px) are scaled up so the labels do not dwarf them
#: pixels: labels readable where a page shows the PNG at 1:1 (a 1280 px wide page does for
#: every grid narrower than that)
LABEL_SIZE, TITLE_SIZE = 16, 18
#: the PNG text chunk that holds a saved grid's layout (:func:`grid_tiles`)
LAYOUT_KEY = "harness-grid-layout"


def font(size: int) -> Any:
    """Pillow's own scalable font (10.1 and newer): nothing to install, and ``textbbox``
    measures it (Pillow 9's fixed bitmap font refused to be measured)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_width(draw: Any, text: str, font: Any) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _tiles(images: Any, least_width: int = 0) -> tuple[Any, int]:
    """uint8 (N, H, W, 3) tiles, scaled up by an integer factor to at least MIN_TILE px high
    and ``least_width`` px wide (the widest column label: labels never overlap)."""
    import numpy as np

    arr = (images.detach().float().cpu().clamp(0, 1) * 255).round().byte().numpy()
    arr = np.repeat(arr, 3, axis=1) if arr.shape[1] == 1 else arr[:, :3]
    arr = arr.transpose(0, 2, 3, 1)
    scale = max(1, math.ceil(MIN_TILE / max(1, arr.shape[1])),
                math.ceil(least_width / max(1, arr.shape[2])))
    return arr.repeat(scale, axis=1).repeat(scale, axis=2), scale


def _draw_grid(images: Any, nrow: int, labels: GridLabels) -> tuple[Any, dict[str, Any]]:
    """The grid of :func:`labelled_grid` and its layout: the labels, ``nrow``, the upscale
    factor and every tile's box ``[x, y, w, h]`` in image order."""
    from PIL import Image, ImageDraw

    label_font, title_font = font(LABEL_SIZE), font(TITLE_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = max([_text_width(probe, t, label_font) for t in labels.col_labels] or [0])
    tiles, scale = _tiles(images, widest + 2 * GAP if widest else 0)
    n, th, tw = tiles.shape[0], tiles.shape[1], tiles.shape[2]
    ncol, rows = max(1, nrow), max(1, math.ceil(n / max(1, nrow)))
    left = max([_text_width(probe, t, label_font) for t in labels.row_labels] or [0])
    left = left + 8 if left else GAP
    title_height = TITLE_SIZE + 8 if labels.title else 0
    top = title_height + (LABEL_SIZE + 8 if labels.col_labels else 0) + GAP
    width = max(left + ncol * (tw + GAP) + GAP,
                _text_width(probe, labels.title, title_font) + 2 * GAP)
    canvas = Image.new("RGB", (width, top + rows * (th + GAP) + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    if labels.title:
        draw.text((GAP, 3), labels.title, fill="black", font=title_font)
    for c, text in enumerate(labels.col_labels[:ncol]):
        x = left + c * (tw + GAP) + (tw - _text_width(draw, text, label_font)) // 2
        draw.text((max(0, x), title_height + 2), text, font=label_font,
                  fill=MARK if c in labels.marked_cols else "black")
    for r, text in enumerate(labels.row_labels[:rows]):
        _, ink_top, _, ink_bottom = draw.textbbox((0, 0), text, font=label_font)
        y = top + r * (th + GAP) + th // 2 - (ink_top + ink_bottom) // 2
        draw.text((GAP, y), text, fill="black", font=label_font)
    boxes = []
    for i in range(n):
        r, c = divmod(i, ncol)
        x, y = left + c * (tw + GAP), top + r * (th + GAP)
        canvas.paste(Image.fromarray(tiles[i]), (x, y))
        boxes.append([x, y, tw, th])
        draw.rectangle((x - 1, y - 1, x + tw, y + th), outline=BORDER)
        if c in labels.marked_cols or r in labels.marked_rows:
            draw.rectangle((x - 2, y - 2, x + tw + 1, y + th + 1), outline=MARK, width=2)
    layout = {"labels": dataclasses.asdict(labels), "nrow": ncol, "scale": scale,
              "tiles": boxes}
    return canvas, layout


def labelled_grid(images: Any, nrow: int, labels: GridLabels | None = None) -> Any:
    """The grid as a PIL RGB image: ``nrow`` images per row, a 1-pixel frame round every
    tile, a 2-pixel coloured frame round the tiles of ``labels.marked_cols`` /
    ``marked_rows``, the title on top, column labels above, row labels on the left."""
    return _draw_grid(images, nrow, labels or GridLabels())[0]


def save_labelled_grid(images: Any, path: str | Path, nrow: int,
                       labels: GridLabels | None = None) -> Path:
    """Write :func:`labelled_grid` as a PNG, atomically, with its layout in the text chunk
    :data:`LAYOUT_KEY` (read back by :func:`grid_tiles`)."""
    from PIL.PngImagePlugin import PngInfo

    from harness.rundir.atomic import atomic_path

    image, layout = _draw_grid(images, nrow, labels or GridLabels())
    text = PngInfo()
    text.add_text(LAYOUT_KEY, json.dumps(layout))
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=text)
    return path


def grid_tiles(path: str | Path) -> tuple[list[Any], dict[str, Any]] | None:
    """The tiles of a grid :func:`save_labelled_grid` wrote, as the 8-bit pixels it drew
    (uint8 H x W x 3, the upscale undone), in image order, and its layout (``labels``,
    ``nrow``, ``scale``, ``tiles``); None for a PNG without a layout (written otherwise, or
    before grids carried one)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        text = getattr(image, "text", {}).get(LAYOUT_KEY)
        if text is None:
            return None
        pixels = np.asarray(image.convert("RGB"))
    layout = json.loads(text)
    step = layout["scale"]
    tiles = [pixels[y : y + h : step, x : x + w : step] for x, y, w, h in layout["tiles"]]
    return tiles, layout


def grid_array(images: Any, nrow: int, labels: GridLabels | None = None) -> Any:
    """:func:`labelled_grid` as a uint8 (H, W, 3) array (for trackers, matplotlib)."""
    import numpy as np

    return np.asarray(labelled_grid(images, nrow, labels))
