"""Issue 32: every feature metric's sizes and extractor file are checked before training.

Each case used to be accepted, trained, and then scored null (or crash) after training:
a k larger than the reference, an ``n_reference`` of 1, a KID subset of 1 (whose null
reason quoted the wrong numbers), a 20 GB or wrong-shape or folder extractor file. Now each
is one ``Error:`` line (exit 2) before anything is written. The shared options
(``feature_extractor``, ``fid_weights``, ``n_reference``, ``batch_size``) are declared once,
in :class:`harness_plugins.metrics.features.ReferenceOptions`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from cli_helpers import assert_error_line, builtin_plugins_only, cli
from harness_plugins.metrics import features, fid, kid, neighbours

WEIGHTS = Path(features.__file__).resolve().parent / "weights"

RUN = ["run", "--model", "ae", "--dataset", "digits", "--set", "train.steps=2",
       "--set", "train.batch_size=8", "--set", "data.n_train=32", "--set", "data.n_test=8",
       "--set", 'eval.protocols=["random-generation"]',
       "--set", "eval.random-generation.n_samples=12",
       "--set", "eval.random-generation.gmm_components=2"]


@pytest.fixture(autouse=True)
def _builtins():  # type: ignore[no-untyped-def]
    with builtin_plugins_only():
        yield


def refused(tmp_path: Path, *sets: str) -> str:
    """The run with ``sets`` is refused before anything is written; its Error: line."""
    out = tmp_path / "run"
    args = [a for s in sets for a in ("--set", s)]
    res = cli(*RUN, *args, "--out", str(out))
    assert_error_line(res, 2)
    assert not out.exists()
    return next(ln for ln in res.err.splitlines() if ln.startswith("Error: "))


@pytest.mark.parametrize("sets, needles", [
    (['eval.metrics=["prdc"]', "eval.prdc.k_density_coverage=5000"],
     ["eval.prdc needs at least 5001 reference images", "k_density_coverage=5000",
      "the training set has 32"]),
    (['eval.metrics=["prdc"]', "eval.prdc.n_reference=6", "eval.prdc.k_density_coverage=6"],
     ["eval.prdc.n_reference must be at least 7", "k_density_coverage=6", "got 6"]),
    (['eval.metrics=["prdc"]', "eval.prdc.k_precision_recall=40"],
     ["eval.prdc needs at least 41 reference images", "k_precision_recall=40"]),
    (['eval.metrics=["kid"]', "eval.kid.subset_size=1"], ["eval.kid.subset_size must be >= 2"]),
    (['eval.metrics=["fid"]', "eval.fid.n_reference=1"],
     ["eval.fid.n_reference must be at least 2", "got 1"]),
    (['eval.metrics=["kid"]', "eval.kid.n_reference=1"], ["eval.kid.n_reference must be at least 2"]),
    (['eval.metrics=["memorisation"]', "eval.memorisation.batch_size=0"],
     ["eval.memorisation.batch_size must be >= 1"]),
    # the samples side of the same rules: k beyond the generated images (the reference of
    # 32 training images is large enough), and a one-image protocol for a covariance
    (['eval.metrics=["prdc"]', "eval.prdc.k_precision_recall=20"],
     ["eval.prdc needs at least 21 images of each protocol it scores",
      "eval.random-generation.n_samples makes 12"]),
    (['eval.metrics=["fid"]', "eval.random-generation.n_samples=1"],
     ["eval.fid needs at least 2 images", "eval.random-generation.n_samples makes 1"]),
    (['eval.metrics=["kid"]', 'eval.protocols=["random-generation", "interpolation"]',
      "eval.interpolation.n_pairs=1",
      "eval.interpolation.n_interp=1"],
     ["eval.kid needs at least 2 images", "eval.interpolation.n_pairs x n_interp makes 1"]),
])
def test_metric_sizes_are_refused_before_training(sets: list[str], needles: list[str],
                                                  tmp_path: Path) -> None:
    line = refused(tmp_path, *sets)
    for needle in needles:
        assert needle in line, line


def test_a_metric_that_scores_nothing_selected_is_not_held_to_its_sizes(tmp_path: Path) -> None:
    """prdc scores samples: with reconstruction alone it never runs, so its k is no error."""
    out = tmp_path / "run"
    res = cli(*RUN[:RUN.index('eval.protocols=["random-generation"]') - 1],
              "--set", 'eval.protocols=["reconstruction"]', "--set", 'eval.metrics=["prdc"]', "--set", "eval.prdc.k_density_coverage=5000",
              "--out", str(out))
    assert res.code == 0, res.err


@pytest.mark.parametrize("config_cls, prefix", [
    (fid.FIDConfig, "fid"), (fid.FIDInceptionConfig, "fid-inception"), (kid.KIDConfig, "kid"),
    (neighbours.PRDCConfig, "prdc"), (neighbours.MemorisationConfig, "memorisation")])
def test_the_shared_feature_options_are_declared_once(config_cls: type, prefix: str) -> None:
    """n_reference, fid_weights and batch_size come from one class (feature_extractor too,
    where the metric lets it be chosen); each metric names its own key in errors."""
    declared_here = {f.name for f in dataclasses.fields(config_cls)
                     if f.name in config_cls.__dict__.get("__annotations__", {})}
    shared = {"fid_weights", "n_reference", "batch_size", "feature_extractor"}
    # a subclass may change a default (batch_size 64 for fid-inception, n_reference 10 000
    # for the neighbour metrics) but the check and the meaning live in ReferenceOptions
    assert issubclass(config_cls, features.ReferenceOptions)
    assert declared_here & shared <= {"batch_size", "n_reference"}
    with pytest.raises(features.HarnessError, match=rf"eval\.{prefix}\.batch_size must be >= 1"):
        config_cls(batch_size=0)


def _big_sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@pytest.mark.parametrize("kind", ["folder", "20 GB", "fashion-mnist's for digits",
                                  "not the recipe's tensors"])
def test_an_extractor_file_is_checked_before_training(kind: str, tmp_path: Path) -> None:
    if kind == "folder":
        path = tmp_path / "weights.safetensors"
        path.mkdir()
        needle = "is a folder, not a weights file"
    elif kind == "20 GB":
        path = _big_sparse(tmp_path / "huge.safetensors", 20 * 10**9)
        needle = "is 2e+04 MB: no domain extractor weights file is larger than 64 MiB"
    elif kind == "not the recipe's tensors":
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        source = WEIGHTS / "digits.safetensors"
        with safe_open(str(source), framework="pt") as f:
            meta = dict(f.metadata())
        state = load_file(str(source))
        state["head.weight"] = state["head.weight"][:, :7].contiguous()
        path = tmp_path / "edited.safetensors"
        save_file(state, str(path), metadata=meta)
        needle = "does not hold the domain extractor's network (tensors missing or of other " \
                 "shapes: head.weight)"
    else:
        path = WEIGHTS / "fashion-mnist.safetensors"
        needle = "was trained on images of shape [1, 28, 28], the dataset has [1, 8, 8]"
    line = refused(tmp_path, 'eval.metrics=["fid"]', f"eval.fid.feature_extractor={path}")
    assert needle in line and "eval.fid.feature_extractor" in line and str(path) in line, line


def test_a_big_extractor_file_is_never_read(tmp_path: Path) -> None:
    """The size is refused from the file's stat: nothing is read (it used to be loaded whole
    and reported as "out of memory: lower train.batch_size")."""
    import tracemalloc

    path = _big_sparse(tmp_path / "huge.safetensors", 20 * 10**9)
    tracemalloc.start()
    try:
        with pytest.raises(features.HarnessError, match="is larger than 64 MiB"):
            features.check_extractor(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    assert os.path.getsize(path) == 20 * 10**9
