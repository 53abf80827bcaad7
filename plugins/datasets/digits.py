"""scikit-learn's 8×8 handwritten digits: a tiny real dataset shipped with scikit-learn, so
fast tests can train on real images without any file or download.

1797 images, pixel values 0..16 scaled by 1/16 to [0, 1], shape 1×8×8, labels 0..9. The split
is deterministic and by position: the first :data:`N_TRAIN` = 1500 images train, the last 297
test (scikit-learn's order is fixed, and the classes are interleaved so both splits hold all
ten digits). ``data.size`` resizes (bilinear, antialiased).
"""

from __future__ import annotations

import numpy as np

from harness.api import DataConfig, DatasetInfo, DataSplits

from ._common import ArrayDataset, build_splits, resize_batch

N_TRAIN = 1500


def load(config: DataConfig) -> DataSplits:
    """Load the digits from scikit-learn's bundled file (no network)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    images = resize_batch(np.clip(images, 0.0, 1.0), config.size)
    labels = np.asarray(bunch.target, dtype=np.int64)
    info = DatasetInfo(
        name="digits",
        shape=tuple(int(d) for d in images.shape[1:]),  # type: ignore[arg-type]
        num_classes=10,
        source="sklearn.datasets.load_digits",
        metadata={"classes": [str(i) for i in range(10)], "split": f"first {N_TRAIN} train"},
    )
    return build_splits(
        info,
        ArrayDataset(images[:N_TRAIN], labels[:N_TRAIN]),
        ArrayDataset(images[N_TRAIN:], labels[N_TRAIN:]),
        config,
    )
