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


def _attribute_columns(n: int, seed: int, as_bool: bool) -> tuple[dict[str, list], list[int]]:
    """Columns named like the release's attributes (as flwrlabs/celeba has them) and the
    masks they mean."""
    values = np.random.default_rng(seed).random((n, 40)) < 0.3
    columns = {name: [bool(v) if as_bool else (1 if v else -1) for v in values[:, j]]
               for j, name in enumerate(CELEBA_ATTRIBUTES)}
    return columns, [sum(1 << j for j in range(40) if values[i, j]) for i in range(n)]


@pytest.mark.parametrize("as_bool", [True, False])
def test_celeba_parquet_carries_its_attributes_as_columns(isolated, as_bool: bool) -> None:
    from datasets_fixtures import random_images, write_parquet_split
    from harness_plugins.datasets import celeba

    masks = {}
    for i, (split, n) in enumerate((("train", 5), ("valid", 2), ("test", 3))):
        columns, masks[split] = _attribute_columns(n, i, as_bool)
        columns = dict(reversed(columns.items()))  # file order is not bit order
        write_parquet_split(isolated / "pq" / f"{split}-00000.parquet",
                            random_images(n, (3, 20, 20), i), None, "image",
                            extra={**columns, "celeb_id": list(range(n))})
    splits = celeba.load(DataConfig(hub_id=str(isolated / "pq"), size=16))
    assert splits.info.num_classes == 40
    assert splits.info.metadata["attributes"] == CELEBA_ATTRIBUTES
    assert [splits.train[i][1] for i in range(5)] == masks["train"]
    assert [splits.extra["valid"][i][1] for i in range(2)] == masks["valid"]
    assert [splits.test[i][1] for i in range(3)] == masks["test"]
    limited = celeba.load(DataConfig(hub_id=str(isolated / "pq"), size=16, n_train=2))
    assert [limited.train[i][1] for i in range(2)] == masks["train"][:2]


def test_celeba_hugging_face_dataset_attributes_become_labels(isolated) -> None:
    datasets = pytest.importorskip("datasets")
    from datasets_fixtures import random_images
    from harness_plugins.datasets import celeba
    from PIL import Image

    masks, parts = {}, {}
    for i, (split, n) in enumerate((("train", 4), ("valid", 2), ("test", 2))):
        columns, masks[split] = _attribute_columns(n, 10 + i, True)
        images = [Image.fromarray(im.transpose(1, 2, 0)) for im in
                  random_images(n, (3, 20, 20), i)]
        parts[split] = datasets.Dataset.from_dict(
            {"image": images, "celeb_id": list(range(n)), **columns},
            features=datasets.Features({"image": datasets.Image(),
                                        "celeb_id": datasets.Value("int64"),
                                        **{a: datasets.Value("bool") for a in columns}}))
    datasets.DatasetDict(parts).save_to_disk(str(isolated / "hf"))
    splits = celeba.load(DataConfig(hub_id=str(isolated / "hf"), size=16))
    assert splits.info.metadata["layout"] == "huggingface"
    assert splits.info.metadata["attributes"] == CELEBA_ATTRIBUTES
    assert [splits.train[i][1] for i in range(4)] == masks["train"]
    assert [splits.test[i][1] for i in range(2)] == masks["test"]


def test_celeba_columns_that_disagree_or_hold_other_values_are_refused(isolated) -> None:
    from datasets_fixtures import random_images, write_parquet_split
    from harness_plugins.datasets import celeba
    from harness_plugins.datasets._common import CorruptDataset

    columns, _ = _attribute_columns(2, 0, True)
    write_parquet_split(isolated / "a" / "train.parquet", random_images(2, (3, 8, 8), 0), None,
                        "image", extra=columns)
    write_parquet_split(isolated / "a" / "test.parquet", random_images(2, (3, 8, 8), 1), None,
                        "image", extra={"Smiling": [True, False]})
    with pytest.raises(CorruptDataset, match="different attribute columns"):
        celeba.load(DataConfig(hub_id=str(isolated / "a"), size=8, cache=False))
    bad = {**columns, "Smiling": [2, 1]}
    for split in ("train", "test"):
        write_parquet_split(isolated / "b" / f"{split}.parquet", random_images(2, (3, 8, 8), 0),
                            None, "image", extra=bad)
    with pytest.raises(CorruptDataset, match="attribute column 'Smiling' row 0 holds 2"):
        celeba.load(DataConfig(hub_id=str(isolated / "b"), size=8, cache=False))
