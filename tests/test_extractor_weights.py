"""One extractor per dataset: weights files with cards (``harness extractor train``), the
shipped weights used by every run of their dataset (validation sweeps and ``data.n_train``
truncations included) without training, and ``eval.fid.feature_extractor = PATH``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Subset

from harness.api import DataConfig
from harness.errors import HarnessError


@pytest.fixture(name="pinned", autouse=True)
def pinned_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the child process `harness extractor train` starts: these tests then train
    in-process (monkeypatches apply); the re-exec itself is tested on its own."""
    from harness_plugins.metrics.domain_weights import REPRODUCIBLE_ENV

    for key, value in REPRODUCIBLE_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(name="quick_recipe")
def quick_recipe_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 12-step schedule: these tests check the files and their use, not the accuracy."""
    from harness_plugins.metrics import domain

    monkeypatch.setattr(domain, "MIN_STEPS", 12)
    monkeypatch.setattr(domain, "EPOCHS", 1)


def test_extractor_train_trains_in_a_child_with_the_kernels_pinned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The instruction set of the CPU kernels is chosen when torch loads: the command re-runs
    itself with REPRODUCIBLE_ENV unless it already has it, and exits with the child's status."""
    import subprocess
    import sys

    from harness_plugins.metrics import domain_weights

    from harness import cli

    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setattr(domain_weights, "train_weights", _no_training)
    started: list[Any] = []

    def fake_run(argv: list[str], env: dict[str, str], check: bool) -> Any:
        started.append((argv, env))
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    out = tmp_path / "d.safetensors"
    with pytest.raises(SystemExit) as exc:
        cli.main(["extractor", "train", "--dataset", "digits", "--out", str(out),
                  "--set", "data.size=8"])
    assert exc.value.code == 3
    ((argv, env),) = started
    assert argv == [sys.executable, "-m", "harness.cli", "extractor", "train", "--dataset",
                    "digits", "--out", str(out), "--set", "data.size=8"]
    assert all(env[k] == v for k, v in domain_weights.REPRODUCIBLE_ENV.items())
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def _no_training(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("trained an extractor instead of using the weights file")


def _digits() -> Any:
    from harness import api

    return api.load_dataset("digits", DataConfig())


def test_extractor_train_writes_weights_and_card_that_fid_accepts_as_a_path(
        tmp_path: Path, quick_recipe: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from harness_plugins.metrics import domain, domain_extractor
    from harness_plugins.metrics.extractor import tensors_sha256
    from harness_plugins.metrics.fid import FID
    from safetensors.torch import load_file

    from harness import api, cli

    out = tmp_path / "digits.safetensors"
    cli.main(["extractor", "train", "--dataset", "digits", "--out", str(out)])
    card = json.loads((tmp_path / "digits.card.json").read_text())
    assert card["dataset"] == "digits" and card["recipe_version"] == domain.RECIPE_VERSION
    assert card["weights_sha256"] == tensors_sha256(load_file(str(out)))
    assert card["file_sha256"] == api.file_sha256(out) and card["n_fit"] == 1350
    assert 0.0 <= card["accuracy"] <= 1.0 and card["command"].startswith("harness extractor")
    assert card["cpu_kernels"].endswith("(pinned: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA="
                                        "AVX2, MKL_CBWR=AVX2,STRICT)")
    assert out.stat().st_size < 600_000  # float16: about 0.5 MB
    assert "use it: --set eval.fid.feature_extractor=" in capsys.readouterr().out
    monkeypatch.setattr(domain_extractor.DomainExtractor, "_train_and_save",
                        staticmethod(_no_training))
    splits = _digits()
    metric = FID(FID.Config(feature_extractor=str(out)))
    images = torch.stack([splits.test[i][0] for i in range(40)])
    with pytest.warns(UserWarning):  # a 12-step classifier is weak, and says so
        value = metric(images, splits.train, splits.info)["fid"]
    assert value > 0 and metric.stamp()["feature_weights_sha256"] == card["weights_sha256"]
    assert metric.details()["extractor"] == "weights file (eval option)"


def test_bad_extractor_options_are_refused_before_any_work(tmp_path: Path) -> None:
    from harness_plugins.metrics.fid import FID

    with pytest.raises(HarnessError, match="do not exist"):
        FID.Config(feature_extractor=str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(HarnessError, match="not a readable safetensors"):
        FID.Config(feature_extractor=str(tmp_path / "junk.safetensors"))
    with pytest.raises(HarnessError, match="is not known.*extractor train"):
        FID.Config(feature_extractor="domian")


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "digits", "--out", "x.pt"], "must end in .safetensors"),
    (["--dataset", "nope"], "dataset 'nope' is not known"),
    (["--dataset", "bumps"], "has no labels"),
    (["--dataset", "digits", "--set", "data.validation=0.1"], "data.KEY=VALUE"),
])  # fmt: skip
def test_extractor_train_refuses_bad_input_with_exit_2(
        argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from harness_plugins.metrics import domain_weights

    from harness import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(domain_weights, "train_weights", _no_training)
    with pytest.raises(SystemExit) as exc:
        cli.main(["extractor", "train", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_shipped_weights_serve_every_run_of_their_dataset_without_training(
        tmp_path: Path, quick_recipe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness_plugins.metrics import domain_extractor, domain_weights

    from harness.training.validation_split import carve_validation

    splits = _digits()
    shipped = tmp_path / "weights"
    shipped.mkdir()
    card = domain_weights.write_weights(splits.train, splits.info,
                                        shipped / "digits.safetensors", progress=False)  # fmt: skip
    monkeypatch.setattr(domain_weights, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(domain_extractor.DomainExtractor, "_train_and_save",
                        staticmethod(_no_training))
    import warnings

    warnings.simplefilter("ignore")  # the quick recipe's accuracy warning
    final = domain_extractor.DomainExtractor.for_dataset(splits.train, splits.info)
    assert final.provenance()["extractor"] == "shipped with the package"
    assert final.describe()["feature_weights_sha256"] == card["weights_sha256"]
    sweep = carve_validation(_digits(), 0.1)  # a beta-sweep run: train minus 10 %
    assert isinstance(sweep.train, Subset) and len(sweep.train) == 1350
    assert domain_extractor.DomainExtractor.for_dataset(sweep.train, sweep.info).describe() == \
        final.describe()  # fmt: skip
    short = _digits()
    short.train = Subset(short.train, range(500))  # what data.n_train = 500 keeps
    assert domain_extractor.DomainExtractor.for_dataset(short.train, short.info).describe() == \
        final.describe()  # fmt: skip
    # other data under the same name is not served the shipped weights
    other = Subset(splits.train, list(range(3, 1500)))
    with pytest.raises(AssertionError, match="trained an extractor"):
        domain_extractor.DomainExtractor.for_dataset(other, splits.info)


def test_the_validation_runs_extractor_trains_on_the_whole_training_split(
        tmp_path: Path, quick_recipe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness_plugins.metrics import domain_extractor, domain_weights

    from harness.training.validation_split import carve_validation

    monkeypatch.setattr(domain_weights, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[int] = []
    real = domain_extractor.train_weights

    def spy(train: Any, info: Any, **kwargs: Any) -> Any:
        seen.append(len(train))
        return real(train, info, **kwargs)

    monkeypatch.setattr(domain_extractor, "train_weights", spy)
    import warnings

    warnings.simplefilter("ignore")
    sweep = carve_validation(_digits(), 0.1)
    a = domain_extractor.DomainExtractor.for_dataset(sweep.train, sweep.info)
    b = domain_extractor.DomainExtractor.for_dataset(_digits().train, _digits().info)
    assert seen == [1500]  # trained once, on all 1500 training images; the final run reuses it
    assert a.describe() == b.describe()


SHIPPED = Path(__file__).resolve().parents[1] / "plugins" / "metrics" / "weights"


@pytest.mark.parametrize("name, floor", [("digits", 0.95), ("fashion-mnist", 0.91)])
def test_shipped_weights_match_their_card(name: str, floor: float) -> None:
    from harness_plugins.metrics.domain_weights import card_path, read_weights
    from harness_plugins.metrics.extractor import tensors_sha256

    from harness import api

    path = SHIPPED / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"no shipped weights for {name} (train them: harness extractor train "
                    f"--dataset {name} --out {path})")  # fmt: skip
    card = json.loads(card_path(path).read_text())
    state, meta = read_weights(path)
    assert card["weights_sha256"] == tensors_sha256(state)
    assert card["file_sha256"] == api.file_sha256(path)
    assert card["accuracy"] >= floor and float(meta["accuracy"]) == card["accuracy"]
    assert path.stat().st_size < 600_000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "fashion-mnist"])
def test_retraining_the_shipped_weights_gives_them_bit_for_bit(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Minutes (digits) to tens of minutes (Fashion-MNIST) on a CPU: slow. The command, as a
    user runs it: it starts its child with the kernels pinned (an AVX-512 machine retrains
    the AVX2-made files bit for bit)."""
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    from harness_plugins.metrics.domain_weights import card_path

    from harness import cli

    path = SHIPPED / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"no shipped weights for {name}")
    out = tmp_path / path.name
    cli.main(["extractor", "train", "--dataset", name, "--out", str(out)])
    shipped = json.loads(card_path(path).read_text())
    again = json.loads(card_path(out).read_text())
    assert again["weights_sha256"] == shipped["weights_sha256"]
    assert again["accuracy"] == shipped["accuracy"]
