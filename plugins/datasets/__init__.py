"""Built-in datasets plugin: the paper's datasets plus small offline ones.

Registered through the ``harness`` entry-point group exactly like a third-party plugin. The
factories are lazy ``"module:attr"`` strings, so listing datasets imports neither torch nor
numpy; each factory is ``load(config: harness.api.DataConfig) -> harness.api.DataSplits``.
"""

from __future__ import annotations

from typing import Any

from harness import hookimpl

_PACKAGE = "harness_plugins.datasets"

DATASETS = (
    ("bumps", "bumps:load",
     "synthetic Gaussian bumps, 1x64x64: 10x10 training mesh, seeded test centres, diagonal "
     "(generated, no download)"),
    ("mnist", "mnist:load_mnist",
     "MNIST digits, 1x28x28, 60k/10k: local IDX files, else Hugging Face"),
    ("fashion-mnist", "mnist:load_fashion_mnist",
     "Fashion-MNIST, 1x28x28, 60k/10k: local IDX files (Debian dataset-fashion-mnist), "
     "else Hugging Face"),
    ("cifar10", "cifar10:load",
     "CIFAR-10, 3x32x32, 50k/10k: python batches, parquet/arrow, image folder or Hugging Face"),
    ("celeba", "celeba:load",
     "CelebA faces, 3x160x160 (centre crop), standard split: img_align_celeba, parquet or "
     "Hugging Face"),
    ("digits", "digits:load",
     "scikit-learn's 8x8 digits, 1x8x8, 1500/297: tiny real data shipped with scikit-learn"),
)


@hookimpl
def register_datasets(register: Any) -> None:
    """Register the built-in datasets (lazily: nothing heavy is imported here)."""
    for name, target, description in DATASETS:
        # bumps is the default: generated, so `harness run --model vrrae` works offline
        register(name, f"{_PACKAGE}.{target}", description, default=name == "bumps")
