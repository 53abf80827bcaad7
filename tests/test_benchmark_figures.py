"""The report's figures come from what the runs wrote: a sample figure is the scored pixels
themselves (checked tile by tile against the run's samples/<protocol>.npz), plots have axis
labels and plain log ticks, and a figure needing model knowledge comes from a plugin hook."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from harness.benchmark import figures as bf


def _bench(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    runs = {}
    for model, seed in (("ae", 0), ("ae", 1), ("vae", 0)):
        rid = f"bumps-{model}-seed{seed}"
        folder = tmp_path / "runs" / rid / "samples"
        folder.mkdir(parents=True)
        images = rng.integers(0, 256, (12, 16, 16, 1), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=images)
        (folder / "random-generation.npz").write_bytes(buffer.getvalue())
        (tmp_path / "runs" / rid / "log.jsonl").write_text("".join(
            json.dumps({"step": s, "loss": {"rec": 100 + s / 10}}) + "\n" for s in range(1, 40)))
        runs[rid] = {"dataset": "bumps", "model": model, "seed": seed, "phase": "final",
                     "status": "done", "dir": f"runs/{rid}"}
    return {"suite": {"name": "t", "datasets": ["bumps"], "models": ["vae", "ae"]},
            "budget": "smoke", "seeds": [0, 1], "sets": [], "runs": runs}


def test_a_sample_figure_is_built_byte_for_byte_from_the_scored_samples(tmp_path: Path) -> None:
    from PIL import Image

    state = _bench(tmp_path)
    (tmp_path / "figures").mkdir()
    ((caption, png),) = bf.sample_figures(state, tmp_path, tmp_path / "figures")
    assert png.name == "random-generation-bumps.png" and "samples/random-generation.npz" in caption
    layout = json.loads(png.with_suffix(".json").read_text())
    figure = np.asarray(Image.open(png).convert("RGB"))
    scale = layout["scale"]
    assert scale == 4 and len(layout["tiles"]) == 2 * bf.N_COLUMNS
    # rows in the suite's model order, each from the model's FIRST seed
    assert [t["source"] for t in layout["tiles"][:: bf.N_COLUMNS]] == [
        "runs/bumps-vae-seed0/samples/random-generation.npz",
        "runs/bumps-ae-seed0/samples/random-generation.npz"]
    # the model's name beside its row: lower-case letters 9 px tall (16 px type; they were 6)
    x0, y0, _, h0 = layout["tiles"][0]["box"]
    ink = np.nonzero((figure[y0:y0 + h0, :x0 - 4] < 128).all(axis=2).any(axis=1))[0]
    assert ink.size and ink.max() - ink.min() + 1 >= 9, ink
    for tile in layout["tiles"]:
        x, y, w, h = tile["box"]
        scored = np.load(tmp_path / tile["source"])["images"][tile["index"]]
        shown = figure[y:y + h, x:x + w]
        assert np.array_equal(shown[::scale, ::scale, 0], scored[:, :, 0])  # the same bytes
        assert np.array_equal(shown, np.kron(np.repeat(scored, 3, 2),
                                             np.ones((scale, scale, 1), np.uint8)))


def _interpolation_runs(tmp_path: Path) -> tuple[dict, dict]:
    """The bench of :func:`_bench`, each run with an interpolation as a run writes it: the
    scored images and the picture (2 pairs of 4 points, 16 x 16) with known inputs."""
    import torch

    from harness.api import GridLabels
    from harness.evaluation.figures import save_labelled_grid

    state = _bench(tmp_path)
    labels = GridLabels(title="Interpolation", row_labels=["pair 1", "pair 2"],
                        col_labels=["input A", "D(E(A))", "t=1/5", "t=2/5", "t=3/5", "t=4/5",
                                    "D(E(B))", "input B"], marked_cols=[0, 7])
    strips = {}
    for n, rec in enumerate(state["runs"].values()):
        run = tmp_path / rec["dir"]
        strip = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(n))
        save_labelled_grid(strip, run / "images" / "interpolation.png", 8, labels)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=np.zeros((8, 16, 16, 1), np.uint8))
        (run / "samples" / "interpolation.npz").write_bytes(buffer.getvalue())
        strips[rec["dir"]] = (strip[:8, 0] * 255).round().to(torch.uint8).numpy()
    return state, strips


def _ink_height(band: np.ndarray) -> int:
    rows = np.nonzero((band < 128).all(axis=2).any(axis=1))[0]
    return int(rows.max() - rows.min() + 1) if rows.size else 0


def test_an_interpolation_figure_is_each_runs_first_strip_from_input_to_input(
        tmp_path: Path) -> None:  # fmt: skip
    from PIL import Image

    state, strips = _interpolation_runs(tmp_path)
    (tmp_path / "figures").mkdir()
    made = dict((p.name, c) for c, p in bf.sample_figures(state, tmp_path, tmp_path / "figures"))
    assert "images/interpolation.png" in made["interpolation-bumps.png"]
    png = tmp_path / "figures" / "interpolation-bumps.png"
    figure = np.asarray(Image.open(png).convert("RGB"))
    layout = json.loads(png.with_suffix(".json").read_text())
    scale, tiles = layout["scale"], layout["tiles"]
    assert figure.shape[1] <= 1280 and len(tiles) == 2 * 8
    assert [t["source"] for t in tiles[::8]] == ["runs/bumps-vae-seed0/images/interpolation.png",
                                                 "runs/bumps-ae-seed0/images/interpolation.png"]
    for tile in tiles:  # every column, the ends (input A, input B) included: the run's pixels
        x, y, w, h = tile["box"]
        drawn = strips[str(Path(tile["source"]).parent.parent)][tile["index"]]
        assert np.array_equal(figure[y:y + h, x:x + w],
                              np.kron(drawn[:, :, None], np.ones((scale, scale, 3), np.uint8)))
    x0, y0, w0, h0 = tiles[1]["box"]  # "D(E(A))" above its column, in 16 px type
    assert _ink_height(figure[y0 - 22 : y0 - 2, x0 : x0 + w0]) >= 14
    assert _ink_height(figure[y0 : y0 + h0, : tiles[0]["box"][0] - 4]) >= 9  # "vae"


def test_runs_without_a_strip_layout_give_the_scored_images(tmp_path: Path) -> None:
    from PIL import Image

    state, _ = _interpolation_runs(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "runs/bumps-ae-seed0/images/interpolation.png")
    (tmp_path / "figures").mkdir()
    made = dict((p.name, c) for c, p in bf.sample_figures(state, tmp_path, tmp_path / "figures"))
    assert "samples/interpolation.npz" in made["interpolation-bumps.png"]


def test_plots_have_axis_labels_and_plain_log_ticks(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    state = _bench(tmp_path)
    fig = bf.loss_figure("bumps", bf.first_runs(state, tmp_path)["bumps"])
    fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_xlabel() == "training step" and "log scale" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
              if t.get_text()]
    assert labels and not any("times" in t or "^" in t or "×" in t for t in labels), labels
    sweep = bf.sweep_figure({"dataset": "bumps", "model": "vae", "key": "model.beta",
                             "metric": "p/m", "values": {"0.0": 3.0, "0.001": 2.0, "0.01": 4.0},
                             "chosen": 0.001})
    (ax,) = sweep.axes
    assert ax.get_xlabel() == "model.beta (swept)" and ax.get_ylabel().startswith("p/m")


def test_plugin_figures_come_through_the_hook(tmp_path: Path) -> None:
    state = _bench(tmp_path)
    seen = {}

    class Host:
        def call_hook(self, name: str, **kwargs: object) -> list:
            seen.update(kwargs, name=name)
            path = Path(str(kwargs["folder"])) / "x.png"
            path.write_bytes(b"png")
            kwargs["register"]("a plugin figure", path)  # type: ignore[operator]
            kwargs["register"]("outside", tmp_path / "elsewhere.png")  # type: ignore[operator]
            return []

    (tmp_path / "figures").mkdir()
    made = bf.plugin_figures(Host(), state, tmp_path, tmp_path / "figures")
    assert made == [("a plugin figure", tmp_path / "figures" / "x.png")]
    assert seen["name"] == "report_figures" and seen["dataset"] == "bumps"
    assert seen["runs"] == {"vae": str(tmp_path / "runs/bumps-vae-seed0"),
                            "ae": str(tmp_path / "runs/bumps-ae-seed0")}


@pytest.mark.parametrize("value, tag", [(0.0, "0"), (1e-3, "0.001"), (1e-6, "1e-06"),
                                        (1.0000001e-3, "0.0010000001"), ("adam", "adam"),
                                        ("a/b", "a_b"), (3, "3")])
def test_value_tags_name_each_value(value: object, tag: str) -> None:
    from harness.benchmark.suite_runner import value_tag

    assert value_tag(value) == tag
