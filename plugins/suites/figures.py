"""The paper's figure 2 for a benchmark report on the bumps: the latent means of each model
with a 2-wide bottleneck, its training codes and the held-out ``diagonal`` split in red. It needs the trained model and the dataset's special split, which the
host does not know: it comes through the ``report_figures`` hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _load(run_dir: Path) -> tuple[Any, Any]:
    """The bumps splits of the run's ``[data]`` section and its trained model (built-in
    models only), through the public API and the built-in plugins: no host internals."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    from harness_plugins.autoencoders.models import load_pretrained
    from harness_plugins.datasets import bumps

    from harness.api import DataConfig

    data = tomllib.loads((run_dir / "config.toml").read_text()).get("data", {})
    known = set(DataConfig.__dataclass_fields__)
    splits = bumps.load(DataConfig(**{k: v for k, v in data.items() if k in known}))
    return splits, load_pretrained(run_dir).eval()


def _codes(model: Any, split: Any) -> Any:
    import torch

    with torch.no_grad():
        return model.encode(torch.stack([split[i][0] for i in range(len(split))])).numpy()


def latent_scatter(dataset: str, runs: dict[str, str], folder: str) -> Path | None:
    """``folder/latent-DATASET.png`` for the bumps, or None (another dataset, no k = 2)."""
    import matplotlib.pyplot as plt

    if dataset != "bumps":
        return None
    loaded = {}
    for model, run_dir in runs.items():
        try:
            splits, net = _load(Path(run_dir))
        except Exception as exc:  # a run that cannot be reloaded loses this figure only
            print(f"figure: cannot reload {run_dir}: {exc}")
            continue
        if getattr(net, "bottleneck_dim", None) == 2:
            loaded[model] = (splits, net)
    if not loaded:
        return None
    fig, axes = plt.subplots(1, len(loaded), figsize=(3.4 * len(loaded), 3.4), squeeze=False)
    for ax, (model, (splits, net)) in zip(axes[0], loaded.items(), strict=True):
        train = _codes(net, splits.train)
        ax.scatter(train[:, 0], train[:, 1], s=8, c="tab:blue", label="training set")
        if "diagonal" in (splits.extra or {}):
            diag = _codes(net, splits.extra["diagonal"])
            ax.scatter(diag[:, 0], diag[:, 1], s=10, c="red", label="diagonal test set")
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("latent mean z₁")
        ax.set_ylabel("latent mean z₂")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(folder) / f"latent-{dataset}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
