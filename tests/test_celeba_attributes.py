"""CelebA's 40 attributes: read from the release's files as bit-mask labels, the domain FID
extractor trains on them as a multi-label task, and fid / kid / prdc / memorisation apply."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from datasets_fixtures import (  # noqa: F401 - the isolated fixture
    CELEBA_ATTRIBUTES,
    isolated_fixture,
    write_celeba,
    write_celeba_attributes,
)

from harness.api import DataConfig
from harness.errors import HarnessError


def _fixture(folder, n: int = 24, csv: bool = False) -> np.ndarray:
    """n faces (16 train, 4 valid, 4 test); attribute 0 (5_o_Clock_Shadow) is on for the
    bright faces, the rest are random 1 / -1."""
    partition = [0] * (n - 8) + [1] * 4 + [2] * 4
    colours = [(200, 200, 200) if i % 2 else (30, 30, 30) for i in range(n)]
    names = write_celeba(folder, partition, colours=colours)
    values = np.where(np.random.default_rng(0).random((n, 40)) < 0.3, 1, -1)
    values[:, 0] = [1 if i % 2 else -1 for i in range(n)]
    write_celeba_attributes(folder, names, values, csv=csv)
    return values


def _masks(values: np.ndarray) -> list[int]:
    return [sum(1 << j for j in range(40) if row[j] == 1) for row in values]


@pytest.mark.parametrize("csv", [False, True])
def test_celeba_reads_the_40_attributes_as_bit_mask_labels(isolated, csv: bool) -> None:
    from harness_plugins.datasets import celeba
    from harness_plugins.metrics.domain import attribute_names, attribute_targets

    values = _fixture(isolated / "celeba", csv=csv)
    splits = celeba.load(DataConfig(root=str(isolated), size=16))
    info = splits.info
    assert info.num_classes == 40 and info.metadata["attributes"] == CELEBA_ATTRIBUTES
    assert attribute_names(info) == CELEBA_ATTRIBUTES
    masks = _masks(values)
    assert [splits.train[i][1] for i in range(16)] == masks[:16]
    assert [splits.extra["valid"][i][1] for i in range(4)] == masks[16:20]
    assert [splits.test[i][1] for i in range(4)] == masks[20:]
    targets = attribute_targets(torch.tensor(masks[:16]), 40)
    assert torch.equal(targets, torch.tensor((values[:16] == 1).astype(np.float32)))


def test_celeba_without_the_attribute_file_has_no_labels_and_bad_lines_are_refused(
        isolated) -> None:  # fmt: skip
    from harness_plugins.datasets import celeba

    folder = isolated / "celeba"
    names = write_celeba(folder, [0, 0, 0, 2])
    splits = celeba.load(DataConfig(root=str(isolated), size=16))
    assert splits.info.num_classes is None and splits.train[0][1] == -1
    write_celeba_attributes(folder, names, np.ones((4, 40), dtype=int))
    text = (folder / "list_attr_celeba.txt").read_text().splitlines()
    text[3] = text[3].replace(" 1", " 7", 1)
    (folder / "list_attr_celeba.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(HarnessError, match=r"list_attr_celeba.txt:4"):
        celeba.load(DataConfig(root=str(isolated), size=16, cache=False))


def test_celeba_extractor_trains_multi_label_and_the_fid_metrics_apply(
        isolated, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from harness_plugins.datasets import celeba
    from harness_plugins.metrics import domain
    from harness_plugins.metrics.fid import FID
    from harness_plugins.metrics.kid import KID
    from harness_plugins.metrics.neighbours import PRDC, Memorisation

    monkeypatch.setattr(domain, "MIN_STEPS", 10)  # a short schedule: this checks the wiring
    monkeypatch.setattr(domain, "N_HOLDOUT", 40)
    _fixture(isolated / "celeba", n=208)
    splits = celeba.load(DataConfig(root=str(isolated), size=16))
    info = splits.info
    for metric in (FID(), KID(), PRDC(), Memorisation()):
        assert metric.applies(info), metric.name
    fid = FID()
    generated = torch.stack([splits.test[i][0] for i in range(4)]).repeat(5, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 10-step classifier may warn about its accuracy
        value = fid(generated, splits.train, info)["fid"]
    assert np.isfinite(value) and value > 0
    stamp = fid.stamp()
    assert stamp["extractor_dataset"] == "celeba" and stamp["extractor_n_fit"] == 200 - 20
    # accuracy is the mean per-attribute accuracy of 40 binary tasks: at least the share of
    # the majority value of each attribute is reachable (~0.7 here), far above 1/40
    assert 0.5 < stamp["extractor_accuracy"] <= 1.0
    out = PRDC(PRDC.Config(n_reference=None))(generated, splits.train, info)
    assert set(out) == {"precision", "recall", "density", "coverage"}
    assert PRDC().stamp() == {}  # a fresh object has no stamp until it scores
