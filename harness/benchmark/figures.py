"""The figures of a benchmark report, drawn only from what the runs wrote: the images each
protocol scored (``RUN_DIR/samples/<protocol>.npz``), the training log, the sweep's numbers.
The host reloads no model and knows no dataset: a figure that needs that (a latent scatter
with a dataset's special split) comes from a plugin's ``report_figures`` hook.

A sample figure is a grid of the stored 8-bit pixels themselves (each tile an integer
upscale, no resampling), one row per model, with ``figures/<name>.json`` beside it giving
every tile's box and the file and index it shows, so a figure can be checked against what
was scored. Where a protocol's own picture in the runs is a set of strips (its columns are
labelled, e.g. an interpolation's input A, D(E(A)), ..., D(E(B)), input B), each model's row
is the first strip of its run's ``images/<protocol>.png``, read back through the layout
saved in it (:func:`harness.evaluation.figures.grid_tiles`), under the same column labels;
otherwise it is the first images scored (``samples/<protocol>.npz``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.benchmark.directory import FIGURES_DIR
from harness.evaluation.figures import LABEL_SIZE, MARK, TITLE_SIZE, font, grid_tiles
from harness.rundir.atomic import atomic_path, atomic_write_json
from harness.rundir.layout import RunLayout

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

N_COLUMNS = 8  # images per model in a sample figure of scored images
TILE_TARGET = 64  # small images are upscaled by an integer factor to about this size
TITLE_HEIGHT = 26
GAP = 2


def first_runs(state: dict[str, Any], out: Path) -> dict[str, dict[str, Path]]:
    """dataset -> model -> the finished final run of its lowest seed, in suite order."""
    found: dict[str, dict[str, Path]] = {}
    done = sorted((r for r in state["runs"].values()
                   if r.get("phase") == "final" and r.get("status") == "done"),
                  key=lambda r: r.get("seed", 0))
    for rec in done:
        found.setdefault(rec["dataset"], {}).setdefault(rec["model"], out / rec["dir"])
    order = state["suite"].get("models", [])
    return {d: dict(sorted(m.items(), key=lambda kv: order.index(kv[0])
                           if kv[0] in order else len(order)))
            for d, m in found.items()}


def _rgb(tile: Any) -> Any:
    import numpy as np

    return np.repeat(tile, 3, axis=2) if tile.shape[2] == 1 else tile[:, :, :3]


def sample_grid(rows: list[tuple[str, Any]], title: str, col_labels: list[str] | None = None,
                marked_cols: list[int] | None = None) -> tuple[Any, dict[str, Any]]:
    """A PIL image: a title line, the column labels (when given), then per row its label and
    its uint8 HWC tiles, the ``marked_cols`` framed in colour; returns it and its layout (tile
    boxes in pixels, the upscale factor). Tiles are at least as wide as their labels."""
    import numpy as np
    from PIL import Image, ImageDraw

    col_labels, marked_cols = col_labels or [], marked_cols or []
    h, w = rows[0][1].shape[1:3]
    label_font, title_font = font(LABEL_SIZE), font(TITLE_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = max([int(probe.textlength(t, font=label_font)) + 4 for t in col_labels] or [0])
    scale = max(1, TILE_TARGET // max(h, w), math.ceil(widest / w))
    cols = max(len(images) for _, images in rows)
    label_width = 12 + max(int(probe.textlength(label[:24], font=label_font)) for label, _ in rows)
    width = max(label_width + cols * (w * scale + GAP) + GAP,
                int(probe.textlength(title, font=title_font)) + 8)
    top = TITLE_HEIGHT + (LABEL_SIZE + 8 if col_labels else 0)
    canvas = Image.new("RGB", (width, top + len(rows) * (h * scale + GAP) + GAP),
                       (255, 255, 255))  # fmt: skip
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill=(0, 0, 0), font=title_font)
    for c, text in enumerate(col_labels[:cols]):
        x = label_width + GAP + c * (w * scale + GAP)
        draw.text((x + (w * scale - int(draw.textlength(text, font=label_font))) // 2,
                   TITLE_HEIGHT + 2), text, font=label_font,
                  fill=MARK if c in marked_cols else (0, 0, 0))  # fmt: skip
    boxes = []
    for r, (label, images) in enumerate(rows):
        y = top + GAP + r * (h * scale + GAP)
        draw.text((4, y + h * scale // 2 - LABEL_SIZE // 2), label[:24], fill=(0, 0, 0),
                  font=label_font)
        for c in range(min(cols, len(images))):
            x = label_width + GAP + c * (w * scale + GAP)
            draw.rectangle([x - 1, y - 1, x + w * scale, y + h * scale], outline=(150, 150, 150))
            if c in marked_cols:
                draw.rectangle([x - 2, y - 2, x + w * scale + 1, y + h * scale + 1],
                               outline=MARK, width=2)
            tile = np.kron(_rgb(images[c]), np.ones((scale, scale, 1), dtype=np.uint8))
            canvas.paste(Image.fromarray(tile), (x, y))
            boxes.append({"row": r, "label": label, "index": c, "box": [x, y, w * scale,
                                                                         h * scale]})
    return canvas, {"scale": scale, "tiles": boxes}


def first_strip(run: Path, protocol: str) -> tuple[Any, dict[str, Any]] | None:
    """The first row of the run's picture of ``protocol`` (``images/<protocol>.png``) as
    uint8 HWC tiles, with the picture's labels, when that picture is a set of strips (its
    columns are labelled); None otherwise, or for a picture without a saved layout."""
    import numpy as np

    path = RunLayout(run).image(protocol)
    found = grid_tiles(path) if path.is_file() else None
    if found is None or not found[1]["labels"]["col_labels"]:
        return None
    tiles, layout = found
    return np.stack(tiles[: layout["nrow"]]), layout["labels"]


def _strip_figure(by_model: dict[str, Path], protocol: str, out: Path,
                  dataset: str) -> tuple[Any, dict[str, Any], str] | None:  # fmt: skip
    """The figure of ``protocol`` from each model's :func:`first_strip`, when every model's
    run has one of the same shape and columns: (image, layout, caption), else None."""
    strips = {model: first_strip(run, protocol) for model, run in by_model.items()}
    found = [s for s in strips.values() if s is not None]
    if not found or len(found) != len(strips) or \
            len({(s[0].shape, tuple(s[1]["col_labels"])) for s in found}) != 1:
        return None
    labels = found[0][1]
    rows = [(model, strip[0]) for model, strip in strips.items() if strip is not None]
    image, layout = sample_grid(rows, f"{dataset}: {protocol}, the first strip of each run",
                                labels["col_labels"], labels["marked_cols"])
    for tile in layout["tiles"]:
        tile["source"] = str(RunLayout(by_model[tile["label"]]).image(protocol)
                             .relative_to(out))  # fmt: skip
    caption = (f"{dataset}: the first strip of '{protocol}' as each model's run drew it (its "
               f"images/{protocol}.png, first seed), the same 8-bit pixels, columns as labelled")
    return image, layout, caption


def _scored_figure(by_model: dict[str, Path], protocol: str, out: Path,
                   dataset: str) -> tuple[Any, dict[str, Any], str] | None:  # fmt: skip
    """The first :data:`N_COLUMNS` images each model's run scored of ``protocol``, from its
    ``samples/<protocol>.npz``: (image, layout, caption), or None without images of one
    shape."""
    import numpy as np

    rows, sources = [], []
    for model, run in by_model.items():
        path = run / "samples" / f"{protocol}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as npz:
                rows.append((model, npz["images"][:N_COLUMNS]))
            sources.append(str(path.relative_to(out)))
    if not rows or len({r[1].shape[1:] for r in rows}) != 1:
        return None
    image, layout = sample_grid(rows, f"{dataset}: {protocol}, images as scored")
    for tile in layout["tiles"]:
        tile["source"] = sources[tile["row"]]
    caption = (f"{dataset}: the first {N_COLUMNS} images of '{protocol}' each model scored "
               f"(its first seed), the stored 8-bit pixels (samples/{protocol}.npz)")
    return image, layout, caption


def sample_figures(state: dict[str, Any], out: Path, folder: Path) -> list[tuple[str, Path]]:
    """One figure per dataset and scored protocol: each model's first strip of it where the
    runs drew strips (:func:`_strip_figure`), else the first images each model's run scored
    (:func:`_scored_figure`)."""
    made = []
    for dataset, by_model in first_runs(state, out).items():
        protocols = sorted({p.stem for run in by_model.values()
                            for p in (run / "samples").glob("*.npz")})
        for protocol in protocols:
            figure = _strip_figure(by_model, protocol, out, dataset) or \
                _scored_figure(by_model, protocol, out, dataset)
            if figure is None:
                continue
            image, layout, caption = figure
            name = f"{protocol}-{dataset}"
            with atomic_path(folder / f"{name}.png") as tmp:
                image.save(tmp, format="PNG")
            atomic_write_json(folder / f"{name}.json", layout)
            made.append((caption, folder / f"{name}.png"))
    return made


def _plain_log_ticks(axis: Any) -> None:
    """Log-scale ticks written as plain numbers (``100``, ``0.02``), never ``1.02×10²``."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def text(v: float, _: object = None) -> str:
        short = f"{v:.3g}"
        return f"{v:.0f}" if "e+" in short else short

    plain = FuncFormatter(text)
    axis.set_major_locator(LogLocator(base=10))
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def losses(path: Path) -> tuple[list[int], list[float]]:
    """(steps, training loss) from a run's log: the ``rec`` part, else the total."""
    steps, values = [], []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            loss = rec.get("loss", {}) if isinstance(rec, dict) else {}
            value = loss.get("rec", loss.get("total")) if isinstance(loss, dict) else loss
            if isinstance(value, int | float) and math.isfinite(value) and value > 0 \
                    and isinstance(rec.get("step"), int):
                steps.append(rec["step"])
                values.append(float(value))
    return steps, values


def loss_figure(dataset: str, by_model: dict[str, Path]) -> Any:
    """The training loss of each model's first run, log scale, labelled axes."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for model, run in by_model.items():
        steps, values = losses(run / "log.jsonl")
        if steps:
            ax.plot(steps, values, label=model, marker="o" if len(steps) < 20 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (rec part; log scale)")
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_title(f"{dataset}: training loss, first seed", fontsize=10)
    if ax.lines:
        ax.legend(fontsize=8, title="model", title_fontsize=8)
    return fig


def sweep_figure(choice: dict[str, Any]) -> Any | None:
    """The selection metric against the swept value, the chosen one starred."""
    import matplotlib.pyplot as plt

    values = {json.loads(k): v for k, v in choice.get("values", {}).items() if v is not None}
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    keys = list(values)
    numeric = all(isinstance(k, int | float) and not isinstance(k, bool) for k in keys)
    xs = sorted(keys) if numeric else keys
    pos = xs if numeric else list(range(len(xs)))
    ax.plot(pos, [values[x] for x in xs], "o-")
    if choice.get("chosen") in values:
        at = choice["chosen"] if numeric else xs.index(choice["chosen"])
        ax.plot([at], [values[choice["chosen"]]], "r*", markersize=14, label="chosen")
        ax.legend(fontsize=8)
    if numeric:
        positive = [x for x in xs if x > 0]
        if positive and min(xs) >= 0 and max(positive) / min(positive) > 50:
            ax.set_xscale("symlog", linthresh=min(positive))
    else:
        ax.set_xticks(pos, [str(x) for x in xs])
    ax.set_xlabel(f"{choice.get('key', 'swept value')} (swept)")
    ax.set_ylabel(f"{choice.get('metric', '')} (selection metric)")
    ax.set_title(f"{choice['model']} on {choice['dataset']} (sweep runs)", fontsize=9)
    return fig


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def plugin_figures(host: Host, state: dict[str, Any], out: Path,
                   folder: Path) -> list[tuple[str, Path]]:
    """What plugins add through ``report_figures`` (the host's one hook-failure policy: a
    broken plugin is reported and skipped)."""
    made: list[tuple[str, Path]] = []

    def register(caption: str, path: Any) -> None:
        path = Path(path)
        if path.is_file() and path.resolve().parent == folder.resolve():
            made.append((str(caption), path))

    for dataset, by_model in first_runs(state, out).items():
        host.call_hook("report_figures", dataset=dataset, folder=str(folder), register=register,
                       runs={m: str(p) for m, p in by_model.items()})
    return made


def figures(state: dict[str, Any], out: Path, host: Host) -> list[tuple[str, Path]]:
    """Every figure of the report as (caption, PNG path)."""
    import matplotlib

    matplotlib.use("Agg")
    folder = out / FIGURES_DIR
    folder.mkdir(exist_ok=True)
    made = sample_figures(state, out, folder)
    made += plugin_figures(host, state, out, folder)
    for dataset, by_model in first_runs(state, out).items():
        made.append((f"{dataset}: training loss per model (first seed), from each run's "
                     "log.jsonl", save_figure(loss_figure(dataset, by_model),
                                              folder / f"loss-{dataset}.png")))
    for choice in state.get("sweep_selection") or state.get("beta_selection") or []:
        fig = sweep_figure(choice)
        if fig is not None:
            name = f"sweep-{choice['dataset']}-{choice['model']}.png"
            made.append((f"{choice['dataset']}/{choice['model']}: {choice.get('metric')} vs "
                         f"{choice.get('key', 'the swept value')}",
                         save_figure(fig, folder / name)))
    _drop_stale(folder, made)
    return made


def _drop_stale(folder: Path, made: list[tuple[str, Path]]) -> None:
    """Remove the figures (and their .json layouts) an earlier report wrote and this one did
    not, e.g. of a dataset the folder's plan no longer holds: the folder is the report's."""
    keep = {p.with_suffix(suffix).name for _, p in made for suffix in (".png", ".json")}
    for path in folder.iterdir():
        if path.suffix in (".png", ".json") and path.name not in keep:
            path.unlink()
