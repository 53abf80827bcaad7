"""The offline Inception-v3 FID extractor: same network and preprocessing as pytorch-fid,
weights only from disk, and a missing-weights message that says what to do.

No real weights exist in the test environment: the pipeline is checked with random weights of
the same architecture (saved to a file to exercise the loading path)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.errors import HarnessError


@pytest.fixture(scope="module")
def random_extractor() -> Any:
    from harness_plugins.metrics.inception import InceptionExtractor

    return InceptionExtractor.random_init(seed=0)


def test_features_shape_determinism_batch_invariance_and_clamping(random_extractor: Any) -> None:
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    f = random_extractor(x)
    assert f.shape == (2, 2048) and f.dtype == torch.float64
    assert f.std() > 1e-3  # He init: non-trivial features
    assert not torch.allclose(f[0], f[1])
    # batch-invariant and deterministic; grayscale == the image repeated on 3 channels;
    # out-of-range values are clamped: all in one batch to keep the test fast
    wild = x[:1] * 3 - 1
    batch = torch.cat([x[1:].repeat(1, 3, 1, 1), wild.clamp(0, 1).repeat(1, 3, 1, 1)])
    g = random_extractor(batch)
    assert torch.allclose(g[0], f[1], rtol=1e-5, atol=1e-6)
    assert torch.allclose(random_extractor(wild)[0], g[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(HarnessError, match="1- or 3-channel"):
        random_extractor(torch.rand(1, 2, 8, 8))


def test_same_network_and_preprocessing_as_pytorch_fid(
    random_extractor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytorch-fid's InceptionV3 with our (random) state dict gives our features."""
    from harness_plugins.metrics.inception import InceptionPool3
    from pytorch_fid import inception as pf

    pool3: InceptionPool3 = random_extractor.network
    # Rebuild the torchvision-style state dict (the release file's layout) from our blocks.
    from harness_plugins.metrics.inception import build_fid_inception

    template = build_fid_inception()
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", None, "Conv2d_3b_1x1",
             "Conv2d_4a_3x3", None, "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
             "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]  # fmt: skip
    for name, block in zip(names, pool3.blocks, strict=False):
        if name is not None:
            getattr(template, name).load_state_dict(block.state_dict())
    state = template.state_dict()
    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *a, **k: state)
    reference = pf.InceptionV3([3]).eval()
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)[0].flatten(1).double()
    assert torch.allclose(random_extractor(x), expected, rtol=1e-5, atol=1e-6)


def test_weights_load_from_an_explicit_path_and_are_hashed(
    tmp_path: Path, random_extractor: Any
) -> None:
    from harness_plugins.metrics.inception import InceptionExtractor, build_fid_inception

    net = build_fid_inception()
    torch.manual_seed(3)
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    path = tmp_path / "weights.pth"
    torch.save(net.state_dict(), path)
    with pytest.warns(UserWarning, match="not be comparable"):
        ex = InceptionExtractor.from_weights(str(path))
    desc = ex.describe()
    assert ex.provenance()["feature_weights"] == str(path)  # the path: provenance only
    assert str(tmp_path) not in str(desc)
    assert len(desc["feature_weights_sha256"]) == 64
    assert desc["feature_extractor"].startswith("inception-v3 pytorch-fid pool3 2048")
    assert "NOT the pytorch-fid release file" in desc["feature_extractor"]
    assert ex(torch.rand(1, 1, 16, 16)).shape == (1, 2048)
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(HarnessError, match="could not load the FID Inception weights"):
        InceptionExtractor.from_weights(str(bad))


def test_missing_weights_say_where_we_looked_and_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness_plugins.metrics import inception

    monkeypatch.delenv("HARNESS_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(HarnessError) as exc:
        inception.find_weights(None)
    msg = str(exc.value)
    assert str(tmp_path / "hub" / "checkpoints" / inception.FID_WEIGHTS_FILE) in msg
    assert inception.FID_WEIGHTS_URL in msg
    assert "--set eval.fid-inception.fid_weights=PATH" in msg
    assert "metric fid" in msg
    assert "HARNESS_FID_WEIGHTS" in msg
    # an explicit path that does not exist is an error even if another file exists
    hub_file = tmp_path / "hub" / "checkpoints" / inception.FID_WEIGHTS_FILE
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"x")
    assert inception.find_weights(None) == hub_file
    with pytest.raises(HarnessError, match="does not exist"):
        inception.find_weights(str(tmp_path / "nope.pth"))
    # the environment variable comes before the hub cache
    env_file = tmp_path / "env.pth"
    env_file.write_bytes(b"y")
    monkeypatch.setenv("HARNESS_FID_WEIGHTS", str(env_file))
    assert inception.find_weights(None) == env_file


def test_fid_metric_records_the_missing_weights_error_in_evaluate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness_plugins.metrics.fid import FIDInception
    from harness_plugins.protocols.paper import (
        Interpolation,
        InterpolationConfig,
        RandomGeneration,
        RandomGenerationConfig,
        Reconstruction,
    )
    from torch.utils.data import TensorDataset

    from harness.api import DatasetInfo, DataSplits
    from harness.configuration.run_config import EvalConfig
    from harness.evaluation.evaluate import evaluate

    monkeypatch.delenv("HARNESS_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :2]

        def decode(self, c: torch.Tensor) -> torch.Tensor:
            return c.mean(1).reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4)

        def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(self.encode(x))

    data = TensorDataset(torch.rand(20, 1, 4, 4), torch.zeros(20, dtype=torch.long))
    splits = DataSplits(DatasetInfo("toy", (1, 4, 4)), data, data)
    protocols = [("reconstruction", Reconstruction()),
                 ("random-generation", RandomGeneration(RandomGenerationConfig(10, 1))),
                 ("interpolation", Interpolation(InterpolationConfig(2, 5)))]
    records = evaluate(Tiny(), splits, EvalConfig(), seed=0, protocols=protocols,
                       metrics=[("fid-inception", FIDInception())], progress=False)
    fids = [r for r in records if r["source"] == "fid-inception"]
    assert [r["protocol"] for r in fids] == ["random-generation", "interpolation"]
    for r in fids:  # one clear "not computed: <how to get the weights>" error
        assert r["metric"] == "fid_inception"  # the key its value has when computed
        assert r["value"] is None and r["error"].startswith("not computed: ")
        assert "pt_inception-2015-12-05-6726825d.pth" in r["error"]
    # said once, not once per protocol
    err = capsys.readouterr().err  # the metric named with its plugin when the host knows it
    assert len(re.findall(r"warning: metric 'fid-inception'( \(plugin '\w+'\))? not computed",
                          err)) == 1, err
    assert records[0]["metric"] == "rec_error_percent" and records[0]["value"] is not None


def _labelled_shapes(n: int = 40, size: int = 16) -> Any:
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = 0.1 * torch.rand(n, 1, size, size, generator=g)
    images[labels == 0, :, 4:12, :] += 0.8
    images[labels == 1, :, :, 4:12] += 0.8
    return TensorDataset(images, labels)


def test_inception_finetuned_without_base_weights_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness_plugins.metrics.fid import FID

    from harness.api import DatasetInfo

    monkeypatch.delenv("HARNESS_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    metric = FID(FID.Config(feature_extractor="inception-finetuned"))
    info = DatasetInfo("shapes", (1, 16, 16), num_classes=2)
    assert metric.applies(info)
    with pytest.raises(HarnessError, match="starts from the pytorch-fid Inception-v3") as exc:
        metric(torch.rand(4, 1, 16, 16), _labelled_shapes(), info)
    assert "pt_inception-2015-12-05-6726825d.pth" in str(exc.value)


@pytest.mark.slow
def test_inception_finetuned_trains_caches_and_stamps_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline with random base weights (no real ones here), two tiny steps on a CPU."""
    from harness_plugins.metrics import inception_finetuned as ift
    from harness_plugins.metrics.fid import FID
    from harness_plugins.metrics.inception import build_fid_inception

    from harness.api import DatasetInfo

    base = tmp_path / "base.pth"
    torch.save(build_fid_inception().state_dict(), base)
    monkeypatch.setattr(ift, "N_FIT", 8)
    monkeypatch.setattr(ift, "BATCH", 4)
    monkeypatch.setattr(ift, "N_EVAL", 4)
    info = DatasetInfo("shapes", (1, 16, 16), num_classes=2)
    data = _labelled_shapes()
    with pytest.warns(UserWarning):  # not the release file; CPU fine-tuning; weak accuracy
        metric = FID(FID.Config(feature_extractor="inception-finetuned", fid_weights=str(base)))
        value = metric(torch.rand(6, 1, 16, 16), data, info)["fid"]
    stamp = metric.stamp()
    assert value > 0 and stamp["extractor_n_fit"] == 8 and stamp["extractor_n_holdout"] == 4
    assert stamp["feature_extractor"].startswith("inception-v3 fine-tuned on the dataset")
    assert len(stamp["base_weights_sha256"]) == 64
    assert stamp["feature_weights_sha256"] != stamp["base_weights_sha256"]
    assert metric.details()["extractor"] == "trained"
    again = FID(FID.Config(feature_extractor="inception-finetuned", fid_weights=str(base)))
    with pytest.warns(UserWarning):
        again(torch.rand(6, 1, 16, 16), data, info)
    assert again.details()["extractor"] == "loaded from cache" and again.stamp() == stamp
