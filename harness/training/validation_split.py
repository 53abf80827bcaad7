"""``data.validation``: a validation split carved from the training split (never the test set).

With ``data.validation = f`` (0 < f < 1) the host splits the dataset's training split
deterministically: a fixed permutation (seed :data:`SPLIT_SEED`, the same for every run seed
and every β, so all the runs of a sweep see the same split) puts ``round(f * n)`` items in a
validation split and the rest in the training split. The validation split then **replaces
the test split** for the whole run: every protocol that scores the test split (reconstruction)
scores the held-out training items instead, and the run never reads the test set. This is what
`harness benchmark` uses to choose β (paper appendix A.3) without looking at the test set.
``info.metadata`` records ``validation = {"fraction", "n_validation", "n_train", "seed"}`` and
the test split's former size stays out of the run.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError

SPLIT_SEED = 20250101


def carve_validation(splits: Any, fraction: float | None) -> Any:
    """``splits`` with its training split divided into train and validation (the latter in
    place of the test split); unchanged when ``fraction`` is None."""
    if fraction is None:
        return splits
    import numpy as np
    from torch.utils.data import Subset

    from harness.api import DataSplits

    n = len(splits.train)
    n_val = int(round(float(fraction) * n))
    if n_val < 1 or n - n_val < 1:
        raise ConfigError(f"data.validation={fraction} leaves an empty split of the {n} "
                          "training items; use a fraction that keeps both non-empty")
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    info = splits.info
    info.metadata["validation"] = {"fraction": float(fraction), "n_validation": n_val,
                                   "n_train": n - n_val, "seed": SPLIT_SEED}
    info.metadata["n_train"] = n - n_val
    info.metadata["n_test"] = n_val
    extra: dict[str, Any] = dict(splits.extra)
    return DataSplits(info=info, train=Subset(splits.train, train_idx),
                      test=Subset(splits.train, val_idx), extra=extra)
