"""The datasets plugin: the bumps formula, digits, the item contract of every built-in
dataset, registration through the host, and a third-party dataset plugin."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets_fixtures import (  # noqa: E402, F401
    isolated_fixture,
    write_celeba,
    write_cifar_batches,
    write_mnist_like,
)
from harness_plugins.datasets import DATASETS, bumps, digits  # noqa: E402
from harness_plugins.datasets._common import ArrayDataset  # noqa: E402

from harness import hookimpl  # noqa: E402
from harness.api import DataConfig, DatasetInfo, DataSplits  # noqa: E402

BUILTIN = {"bumps", "mnist", "fashion-mnist", "cifar10", "celeba", "digits"}


# -------------------------------------------------------------------------------------- bumps
def hand_bump(x0: float, y0: float, row: int, col: int, size: int = 64) -> float:
    """The bumps formula (docs/maths.md) written out by hand for one pixel."""
    x = -1.0 + 2.0 * col / (size - 1)
    y = -1.0 + 2.0 * row / (size - 1)
    return math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 0.2**2))


def raw(splits: DataSplits, value: float) -> float:
    """Undo the bumps' standardisation (recorded in the metadata) for one pixel value."""
    std = splits.info.metadata["standardization"]
    return value * std["std"] + std["mean"]


def test_bumps_sizes_and_training_mesh() -> None:
    splits = bumps.load(DataConfig())
    assert splits.info.shape == (1, 64, 64) and splits.info.source == "generated"
    assert (len(splits.train), len(splits.test), len(splits.extra["diagonal"])) == (100, 100, 20)
    centres = np.array(splits.info.metadata["train_centres"])
    mesh = np.linspace(-0.5, 0.5, 10)
    assert centres.shape == (100, 2)
    assert sorted(set(np.round(centres[:, 0], 12))) == sorted(np.round(mesh, 12))
    assert sorted(set(np.round(centres[:, 1], 12))) == sorted(np.round(mesh, 12))
    assert len({tuple(c) for c in centres.round(12)}) == 100  # every mesh point once
    image, label = splits.train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 64, 64) and label == -1
    assert splits.info.metadata["spread"] == 0.2


@pytest.mark.parametrize("index", [0, 9, 37, 99])
@pytest.mark.parametrize("pixel", [(0, 0), (10, 40), (31, 32), (47, 16), (63, 63)])
def test_bumps_match_the_formula_by_hand(index: int, pixel: tuple[int, int]) -> None:
    splits = bumps.load(DataConfig())
    x0, y0 = splits.info.metadata["train_centres"][index]
    row, col = pixel
    assert raw(splits, splits.train[index][0][0, row, col].item()) == pytest.approx(
        hand_bump(x0, y0, row, col), rel=1e-5, abs=1e-6
    )


def test_bumps_rows_follow_y_and_columns_follow_x() -> None:
    splits = bumps.load(DataConfig())
    centres = splits.info.metadata["train_centres"]
    index = centres.index([-0.5, 0.5])  # left (x0 < 0), low rows are y = -1: peak at bottom
    image = splits.train[index][0][0].numpy()
    row, col = np.unravel_index(image.argmax(), image.shape)
    assert (row, col) in {(47, 16), (47, 15), (48, 16), (48, 15)}
    assert raw(splits, image.max()) == pytest.approx(hand_bump(-0.5, 0.5, 47, 16), rel=1e-6)


def test_bumps_test_set_is_seeded_uniform_and_rendered_from_its_centres() -> None:
    a = bumps.load(DataConfig(seed=3))
    b = bumps.load(DataConfig(seed=3))
    c = bumps.load(DataConfig(seed=4))
    assert torch.equal(a.test.tensor(), b.test.tensor())
    assert a.info.metadata["test_centres"] == b.info.metadata["test_centres"]
    assert not torch.equal(a.test.tensor(), c.test.tensor())
    centres = np.array(a.info.metadata["test_centres"])
    assert centres.shape == (100, 2) and centres.min() >= -0.5 and centres.max() <= 0.5
    assert centres.std() > 0.2  # spread over the square, not clustered
    x0, y0 = centres[7]
    assert raw(a, a.test[7][0][0, 20, 45].item()) == pytest.approx(hand_bump(x0, y0, 20, 45),
                                                                   rel=1e-5, abs=1e-6)


def test_bumps_diagonal_and_training_statistics() -> None:
    splits = bumps.load(DataConfig())
    diag = np.array(splits.info.metadata["diagonal_centres"])
    assert np.array_equal(diag[:, 0], diag[:, 1])
    assert diag[0, 0] == -0.5 and diag[-1, 0] == 0.5
    images = splits.extra["diagonal"].tensor()
    assert torch.allclose(images, images.transpose(-1, -2))  # x0 = y0: symmetric images
    # one scalar mean/std from the TRAINING split, applied to every split (docs/maths.md)
    raw_train = torch.from_numpy(bumps.render(bumps.train_centres())).double()
    meta = splits.info.metadata
    assert meta["standardization"]["mean"] == pytest.approx(raw_train.mean().item(), rel=1e-12)
    assert meta["standardization"]["std"] == pytest.approx(raw_train.std(unbiased=False).item(),
                                                           rel=1e-12)
    assert meta["standardization"]["mean"] == pytest.approx(0.0607405, rel=1e-5)
    assert meta["standardization"]["std"] == pytest.approx(0.1635568, rel=1e-5)
    train = splits.train.tensor().double()
    assert train.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert train.std(unbiased=False).item() == pytest.approx(1.0, rel=1e-5)
    # the test split uses the training statistics, not its own: its mean is not exactly 0
    other = bumps.load(DataConfig(seed=5))
    assert other.info.metadata["standardization"] == meta["standardization"]
    test = other.test.tensor().double()
    raw_test = torch.from_numpy(bumps.render(np.array(meta["test_centres"]))).double()
    assert torch.allclose(splits.test.tensor().double(), (raw_test - meta["standardization"][
        "mean"]) / meta["standardization"]["std"], atol=1e-5)
    assert abs(test.mean().item()) > 1e-4
    assert raw(splits, train.min().item()) == pytest.approx(0.0, abs=1e-6)
    assert raw(splits, train.max().item()) <= 1.0 + 1e-6


def test_bumps_size_option_and_head_and_speed() -> None:
    bumps.load(DataConfig())  # warm imports
    start = time.perf_counter()
    small = bumps.load(DataConfig(size=32, n_train=10, n_test=7))
    assert time.perf_counter() - start < 0.5
    assert small.info.shape == (1, 32, 32) and small.train[0][0].shape == (1, 32, 32)
    assert (len(small.train), len(small.test)) == (10, 7)
    x0, y0 = small.info.metadata["train_centres"][3]
    assert raw(small, small.train[3][0][0, 5, 20].item()) == pytest.approx(
        hand_bump(x0, y0, 5, 20, size=32), rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------------------- digits
def test_digits_are_sklearns_scaled_and_split() -> None:
    from sklearn.datasets import load_digits

    ref = load_digits()
    splits = digits.load(DataConfig())
    assert splits.info.shape == (1, 8, 8) and splits.info.num_classes == 10
    assert (len(splits.train), len(splits.test)) == (1500, 297)
    assert torch.allclose(splits.train.tensor()[:, 0], torch.tensor(ref.images[:1500] / 16.0,
                                                                     dtype=torch.float32))
    assert splits.test[0][1] == int(ref.target[1500])
    assert splits.train.tensor().max().item() == 1.0
    assert {int(v) for v in splits.test.labels} == set(range(10))
    assert digits.load(DataConfig(size=16)).info.shape == (1, 16, 16)


# ------------------------------------------------------------------------- the item contract
def _fixture_config(name: str, root) -> DataConfig:  # type: ignore[no-untyped-def]
    if name in ("mnist", "fashion-mnist"):
        write_mnist_like(root / name)
        return DataConfig(root=str(root / name))
    if name == "cifar10":
        write_cifar_batches(root / "cifar-10-batches-py")
        return DataConfig(root=str(root))
    if name == "celeba":
        write_celeba(root / "celeba", [0, 0, 0, 1, 2, 2])
        return DataConfig(root=str(root / "celeba"), size=24)
    return DataConfig()


def check_contract(splits: DataSplits) -> None:
    """What every dataset must give: float32 C×H×W in [0, 1] (after undoing a recorded
    ``standardization``) matching info.shape, int labels."""
    assert isinstance(splits.info, DatasetInfo)
    for split in [splits.train, splits.test, *splits.extra.values()]:
        assert len(split) > 0
        for index in (0, len(split) - 1):
            image, label = split[index]
            assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
            assert tuple(image.shape) == splits.info.shape
            std = splits.info.metadata.get("standardization")
            if std:  # stored as (raw - mean) / std: the raw values are in [0, 1]
                image = image * std["std"] + std["mean"]
            assert image.min().item() >= -1e-6 and image.max().item() <= 1.0 + 1e-6
            assert isinstance(label, int)
            if splits.info.num_classes is not None:
                assert 0 <= label < splits.info.num_classes
            else:
                assert label == -1
    loader = torch.utils.data.DataLoader(splits.train, batch_size=3)
    images, labels = next(iter(loader))
    assert images.shape == (min(3, len(splits.train)), *splits.info.shape)
    assert labels.dtype == torch.int64


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_dataset_meets_the_contract(name: str, isolated) -> None:
    from harness.host import plugins

    try:
        host = plugins.load_host()
        factory = host.get("dataset", name).load()
        splits = factory(_fixture_config(name, isolated / "data"))
    finally:
        plugins.reset_host()
    assert splits.info.name == name
    check_contract(splits)


# ------------------------------------------------------------------------------ registration
def test_listing_imports_nothing_heavy() -> None:
    code = (
        "import sys, harness_plugins.datasets as d; "
        "names=[]; d.register_datasets(register=lambda n, f, desc, **kw: names.append((n, f))); "
        "print(sorted(n for n, _ in names)); "
        "print(all(isinstance(f, str) for _, f in names)); "
        "print([m for m in ('torch', 'numpy', 'datasets', 'sklearn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert eval(out[0]) == sorted(BUILTIN)
    assert out[1] == "True" and out[2] == "[]"


def test_the_host_lists_all_six_with_descriptions() -> None:
    from harness.host import plugins

    try:
        host = plugins.load_host()
        registry = host.registry("dataset")
        assert BUILTIN <= set(registry.names())
        for name in BUILTIN:
            component = host.get("dataset", name)
            assert component.plugin == "datasets" and component.description
            assert callable(component.load())
    finally:
        plugins.reset_host()
    assert len(DATASETS) == 6


class SquaresPlugin:
    """A third-party plugin: registers a dataset exactly as the built-ins do."""

    @staticmethod
    def load(config: DataConfig) -> DataSplits:
        size = config.size or 6
        images = np.zeros((4, 1, size, size), dtype=np.float32)
        for i in range(4):
            images[i, 0, i: i + 2, i: i + 2] = 1.0
        info = DatasetInfo("squares", (1, size, size), 2, "generated", {"plugin": "third"})
        labels = np.array([0, 1, 0, 1])
        return DataSplits(info, ArrayDataset(images, labels), ArrayDataset(images[:2], labels[:2]))

    @hookimpl
    def register_datasets(self, register) -> None:  # type: ignore[no-untyped-def]
        register("squares", self.load, "four squares (third-party test plugin)")


def test_a_third_party_dataset_registers_and_loads_through_the_host() -> None:
    from harness.host import plugins

    try:
        host = plugins.load_host(plugins={"squares-plugin": SquaresPlugin()})
        component = host.get("dataset", "squares")
        assert component.plugin == "squares-plugin"
        assert {"squares", "bumps"} <= set(host.registry("dataset").names())
        splits = component.load()(DataConfig(size=8))
    finally:
        plugins.reset_host()
    check_contract(splits)
    assert splits.info.shape == (1, 8, 8) and splits.train[3][1] == 1
    assert splits.train[2][0][0, 2:4, 2:4].sum().item() == 4.0


def test_array_dataset_refuses_bad_arrays_and_bad_indices() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        ArrayDataset(np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 or float32"):
        ArrayDataset(np.zeros((2, 1, 8, 8), dtype=np.int32))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ArrayDataset(np.zeros((2, 1, 8, 8), dtype=np.uint8), np.zeros(3))
    split = ArrayDataset(np.full((2, 1, 2, 2), 255, dtype=np.uint8))
    assert split[-1][0].tolist() == [[[1.0, 1.0], [1.0, 1.0]]]
    with pytest.raises(IndexError):
        split[2]
