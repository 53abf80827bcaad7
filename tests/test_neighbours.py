"""Nearest-neighbour metrics: precision/recall/density/coverage equal to the ``prdc`` package,
memorisation on constructed cases (copies vs fresh samples), the bumps' centre count, and the
metrics' stamps and feature space."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from harness.api import DatasetInfo
from harness.errors import HarnessError


def _gauss(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.3, 1.4), (1.0, 0.5)])
def test_prdc_equals_the_prdc_package_on_the_same_features(shift: float, scale: float) -> None:
    prdc_pkg = pytest.importorskip("prdc", reason="pip install prdc for the cross-check")
    from harness_plugins.metrics.neighbours import prdc

    real, fake = _gauss(700, 32, 1), _gauss(500, 32, 2, shift, scale)
    ours = prdc(real, fake, k_pr=3, k_dc=5, chunk=128)  # chunks of 128 real rows
    ref3 = prdc_pkg.compute_prdc(real.numpy(), fake.numpy(), nearest_k=3)
    ref5 = prdc_pkg.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    for key, ref in (("precision", ref3), ("recall", ref3), ("density", ref5),
                     ("coverage", ref5)):  # fmt: skip
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-6), key
    assert 0.0 < ours["precision"] < 1.0 and 0.0 < ours["coverage"] <= 1.0


def test_prdc_does_not_depend_on_the_chunk_and_reads_fidelity_and_diversity() -> None:
    from harness_plugins.metrics.neighbours import prdc

    real = _gauss(400, 8, 3)
    whole = prdc(real, _gauss(300, 8, 4), chunk=10_000)
    assert prdc(real, _gauss(300, 8, 4), chunk=37) == whole
    same = prdc(real, _gauss(400, 8, 5))
    collapsed = prdc(real, _gauss(400, 8, 6, scale=0.1))  # all near the mode: faithful, narrow
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.2
    assert collapsed["coverage"] < same["coverage"] - 0.3
    assert collapsed["density"] > same["density"]  # piled up where the real data is densest
    off = prdc(real, _gauss(400, 8, 7, shift=4.0))
    assert off["precision"] < 0.05 and off["coverage"] < 0.05


def _authenticity_by_definition(train: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """The rule as written (Alaa et al. 2022, dgm-eval): one dense matrix, no chunks."""
    own = torch.cdist(train, train)
    own.fill_diagonal_(float("inf"))
    d2_all = own.min(1).values
    d = torch.cdist(fake, train)
    d1, nearest = d.min(1)
    d2 = d2_all[nearest]
    return float((d2 < d1).double().mean()), float((d1 < d2).double().mean())


def test_memorisation_copies_score_as_copies_and_fresh_samples_do_not() -> None:
    from harness_plugins.metrics.neighbours import authenticity

    train = _gauss(600, 16, 10)
    copies = train[torch.randperm(600, generator=torch.Generator().manual_seed(0))[:200]]
    out = authenticity(train, copies, chunk=64)
    assert out == {"authenticity": 0.0, "memorised": 1.0}
    noisy = copies + 1e-3 * _gauss(200, 16, 11)  # near-copies too
    assert authenticity(train, noisy)["memorised"] == 1.0
    fresh = _gauss(400, 16, 12)  # new draws of the training distribution
    out = authenticity(train, fresh, chunk=64)
    assert out["memorised"] < 0.6 and out["authenticity"] > 0.4
    assert out["authenticity"] + out["memorised"] == pytest.approx(1.0)  # no ties here
    ref = _authenticity_by_definition(train, fresh)
    assert (out["authenticity"], out["memorised"]) == pytest.approx(ref, abs=1e-12)
    half = authenticity(train, torch.cat([copies, fresh[:200]]))
    assert half["memorised"] == pytest.approx(0.5 + 0.5 * authenticity(train, fresh[:200])[
        "memorised"], abs=1e-12)


class FlatExtractor:
    """A test extractor: the flattened pixels, declared with a weights hash."""

    name = "flat"

    def __call__(self, images: torch.Tensor, device: Any = None) -> torch.Tensor:
        return images.clamp(0, 1).double().flatten(1)

    def describe(self) -> dict[str, Any]:
        return {"feature_extractor": "flat test", "feature_weights_sha256": "ef" * 32}


def test_prdc_metric_stamps_k_the_extractor_and_the_counts() -> None:
    from harness_plugins.metrics.neighbours import PRDC, Memorisation, prdc

    g = torch.Generator().manual_seed(0)
    images = torch.rand(90, 1, 4, 4, generator=g)
    reference = TensorDataset(images, torch.zeros(90, dtype=torch.long))
    info = DatasetInfo("toy-prdc", (1, 4, 4), num_classes=1)
    generated = torch.rand(40, 1, 4, 4, generator=g) * 0.8
    metric = PRDC(PRDC.Config(n_reference=60), extractor=FlatExtractor())
    out = metric(generated, reference, info)
    from harness_plugins.metrics.features import subset_indices

    idx = subset_indices(90, 60)
    expected = prdc(images[idx].double().flatten(1), generated.double().flatten(1))
    assert out == pytest.approx(expected, abs=1e-12)
    stamp = metric.stamp()
    assert stamp["k_precision_recall"] == 3 and stamp["k_density_coverage"] == 5
    assert stamp["n_reference"] == 60 and stamp["n_images"] == 40
    assert stamp["feature_extractor"] == "flat test" and stamp["metric"] == "prdc"
    assert metric.display["recall"].higher_is_better is True
    copies = Memorisation(extractor=FlatExtractor())
    assert copies(images[:30], reference, info) == {"authenticity": 0.0, "memorised": 1.0}
    assert Memorisation.display["memorised"].higher_is_better is False
    with pytest.raises(HarnessError, match="n_reference"):
        PRDC.Config(n_reference=3)


def test_bumps_copies_are_counted_on_training_centres_and_in_pixel_space() -> None:
    from harness_plugins.datasets import bumps
    from harness_plugins.metrics.gaussian_fit import BumpCopies
    from harness_plugins.metrics.neighbours import PRDC, Memorisation, authenticity

    from harness.api import DataConfig

    splits = bumps.load(DataConfig())
    info = splits.info
    train = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    test = torch.stack([splits.test[i][0] for i in range(len(splits.test))])
    metric = BumpCopies()
    assert metric.applies(info)
    assert metric(train, splits.train, info)["bumps_on_training_centre"] == 100
    fresh = metric(test, splits.train, info)  # 100 uniform centres: chance is about 1 %
    assert fresh["bumps_on_training_centre"] <= 5
    assert metric.stamp()["chance_share"] == pytest.approx(100 * np.pi * (0.05 / 9) ** 2)
    # why memorisation does not apply to the bumps: on a regular mesh the authenticity rule
    # calls every fresh bump memorised, in pixel space, just like the copies
    flat_train, flat_test = train.double().flatten(1), test.double().flatten(1)
    assert authenticity(flat_train, flat_train[:50])["memorised"] == 1.0
    assert authenticity(flat_train, flat_test)["memorised"] == 1.0
    assert not Memorisation().applies(info) and not PRDC().applies(info)


def _issue_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Ten training rows repeated at the end; the generated set copies the first twenty."""
    real = torch.tensor(np.random.default_rng(0).standard_normal((500, 16)))
    real[-10:] = real[:10]
    return real, real[:20].clone()


def _exact_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def test_identical_rows_are_exactly_0_apart_and_no_value_depends_on_the_chunk() -> None:
    from harness_plugins.metrics.neighbours import authenticity, nearest_neighbours, prdc

    real, fake = _issue_example()
    own = nearest_neighbours(real, 1, chunk=3)[:, 0]
    assert (own[:10] == 0).all() and (own[-10:] == 0).all() and (own[10:-10] > 0).all()
    assert prdc(real, fake, chunk=33) == prdc(real, fake, chunk=2048)  # density 1.0 both
    runs = [authenticity(real, fake, chunk=c) for c in (2048, 3, 7)]
    # every sample is a verbatim training image, the ten with a duplicate in training too
    assert runs == [{"authenticity": 0.0, "memorised": 1.0}] * 3
    # far from the origin the Gram expansion loses digits: decisions still use exact distances
    shifted_real, shifted_fake = real * 0.01 + 40.0, fake * 0.01 + 40.0
    ref = _exact_sq(shifted_real, shifted_real)
    ref.fill_diagonal_(float("inf"))
    r5 = ref.topk(5, dim=1, largest=False).values[:, -1]
    density = float((_exact_sq(shifted_real, shifted_fake) < r5[:, None]).sum() / (5 * 20))
    outs = [prdc(shifted_real, shifted_fake, chunk=c)["density"] for c in (2048, 37)]
    assert outs == [density] * 2
    auth = [authenticity(shifted_real, shifted_fake, chunk=c) for c in (2048, 3)]
    assert auth == [{"authenticity": 0.0, "memorised": 1.0}] * 2


def test_memorisation_compares_with_every_training_image_and_reports_the_held_out_null() -> None:
    from harness_plugins.metrics.neighbours import Memorisation, authenticity

    g = torch.Generator().manual_seed(3)
    train = torch.rand(300, 1, 4, 4, generator=g)
    test = torch.rand(120, 1, 4, 4, generator=g)
    reference = TensorDataset(train, torch.zeros(300, dtype=torch.long))
    held_out = TensorDataset(test, torch.zeros(120, dtype=torch.long))
    info = DatasetInfo("toy-memorisation", (1, 4, 4), num_classes=1)
    assert Memorisation.Config().n_reference is None  # the whole training set by default
    metric = Memorisation(extractor=FlatExtractor())
    late_copies = train[-50:]  # the images a 10 000-of-60 000 subset would have missed
    out = metric(late_copies, reference, info, held_out=held_out)
    assert out["authenticity"] == 0.0 and out["memorised"] == 1.0
    null = authenticity(train.double().flatten(1), test.double().flatten(1))
    assert out["memorised_held_out"] == null["memorised"]
    assert 0.0 < out["memorised_held_out"] < 1.0  # chance, not copying
    assert metric.stamp()["n_held_out"] == 120 and metric.stamp()["n_reference"] == 300
    calls: list[int] = []

    class Counting(FlatExtractor):
        def __call__(self, images: torch.Tensor, device: Any = None) -> torch.Tensor:
            calls.append(images.shape[0])
            return super().__call__(images, device)

    counting = Memorisation(extractor=Counting())
    counting(late_copies, reference, info, held_out=held_out)
    counting(late_copies, reference, info, held_out=held_out)  # a second protocol
    assert calls.count(120) == 1 and calls.count(50) == 2  # the held-out features once
    fresh = metric(test[:60], reference, info)  # no held-out split given: no null
    assert set(fresh) == {"authenticity", "memorised"}
    with pytest.raises(HarnessError, match="n_held_out"):
        Memorisation.Config(n_held_out=-1)
