"""Models that are not autoencoders (issue: a generic harness): capabilities, protocols that
do not apply, metrics by kind, and training steps a model owns. The third-party models are
the tested example plugin of docs/plugins.md (tests/generative_plugin), registered in process."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import api
from harness.errors import PluginError
from harness.host import plugins
from tests.cli_helpers import assert_error_line, cli

PLUGIN_DIR = Path(__file__).resolve().parent / "generative_plugin"
SMALL = ["--dataset", "digits", "--set", "train.batch_size=32", "--set", "data.n_train=256",
         "--set", "data.n_test=64"]
FEW_SAMPLES = ["--set", "eval.random-generation.n_samples=200"]
SMALL_KID = ["--set", "eval.kid.subset_size=100", "--set", "eval.kid.subsets=10"]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example plugin registered in process beside the built-in plugins only."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "")
    import harness_generative_example as plugin

    plugins.load_host({"generative-example": plugin})
    yield plugin
    plugins.reset_host()
    for name in [m for m in sys.modules if m.startswith("harness_generative_example")]:
        del sys.modules[name]


def metrics(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())


def values(doc: dict[str, Any], protocol: str) -> dict[str, Any]:
    return {r["metric"]: r["value"] for r in doc["results"] if r["protocol"] == protocol}


# ------------------------------------------------------------------ the guide shows this code
WALKTHROUGH = {"pyproject.toml": "**1. `pyproject.toml`",
               "harness_generative_example/__init__.py":
                   "**2. `harness_generative_example/__init__.py`",
               "harness_generative_example/gauss.py": "**3. A sample-only model**",
               "harness_generative_example/gan.py": "**4. A GAN**",
               "harness_generative_example/protocol.py": "**5. A protocol of kind `samples`**"}


@pytest.mark.parametrize("name", list(WALKTHROUGH))
def test_the_plugin_guide_shows_each_file_of_the_example_whole(name: str) -> None:
    """docs/plugins.md's walkthrough gives the files of tests/generative_plugin in full, so a
    reader who copies its blocks has the package these tests run."""
    import re

    guide = (PLUGIN_DIR.parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = guide[guide.index("### Your own plugin package, step by step"):]
    block = re.search(r"```(?:toml|python)\n(.*?)```",
                      section[section.index(WALKTHROUGH[name]):], re.DOTALL)
    assert block is not None, f"no code block after {WALKTHROUGH[name]!r}"
    assert block.group(1) == (PLUGIN_DIR / name).read_text(encoding="utf-8"), name


def test_the_example_declares_its_entry_point_for_the_package_it_ships() -> None:
    from harness.configuration.run_config import read_toml

    project = read_toml(PLUGIN_DIR / "pyproject.toml", "pyproject", "the example plugin")
    assert project["project"]["entry-points"]["harness"] == {
        "generative-example": "harness_generative_example"}
    assert project["tool"]["setuptools"]["packages"] == ["harness_generative_example"]


def test_the_example_configs_refuse_bad_values_naming_the_key(example: Any) -> None:
    from harness_generative_example.gan import TinyGANConfig
    from harness_generative_example.gauss import GaussConfig

    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="model.rank must be >= 1, got 0"):
        GaussConfig(rank=0)
    with pytest.raises(ConfigError, match="model.hidden must be >= 1, got -2"):
        TinyGANConfig(hidden=-2)


# ------------------------------------------------------------------- capabilities, contract
def test_a_sample_only_model_is_scored_and_the_rest_does_not_apply(example: Any,
                                                                   tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = cli("run", "--model", "gauss", *SMALL, *FEW_SAMPLES, *SMALL_KID, "--set", "train.steps=60",
              "--set", "train.lr=0.01",
              "--set", 'eval.metrics=["fid", "kid", "prdc", "gaussian-fit"]', "--out", str(run))
    assert res.code == 0, res.err
    doc = metrics(run)
    got = values(doc, "random-generation")
    assert 0 < got["fid"] < 200 and got["kid"] > 0 and 0 <= got["precision"] <= 1
    assert "recall" in got
    assert doc["not_applicable"] == {
        "codes": "does not apply: gauss has no encoder",
        "interpolation": "does not apply: gauss has no encoder",
        "reconstruction": "does not apply: gauss has no reconstruction"}
    assert not [r for r in doc["results"] if r["protocol"] != "random-generation"]
    # a metric that cannot score says why, in metrics.json and the summary
    assert doc["not_scored"] == [{"protocol": "random-generation", "metric": "gaussian-fit",
                                  "reason": "does not apply to dataset 'digits'"}]
    assert "not scored: gaussian-fit (does not apply to dataset 'digits')" in res.out + res.err
    sampler = {r["stamp"]["sampler"] for r in doc["results"]}
    assert sampler == {"the model's own sampler, model.sample(n, generator)"}
    # the summary's title names the sampler that ran, not a GMM on codes it does not have
    assert "Random generation (the model's own sampler)" in res.out + res.err
    assert "GMM on the codes" not in res.out + res.err
    # said before the first step, and in the summary
    assert res.err.index("interpolation does not apply") < res.err.index("step ")
    assert "no number: does not apply: gauss has no encoder" in res.err + res.out


def test_the_prior_sampler_of_a_sample_only_model_is_its_own(example: Any,
                                                              tmp_path: Path) -> None:
    res = cli("run", "--model", "gauss", *SMALL, *FEW_SAMPLES, "--set", "train.steps=2",
              "--set", "eval.random-generation.sampler=prior", "--set", "eval.metrics=[]",
              "--set", 'eval.protocols=["random-generation", "interpolation"]',
              "--out", str(tmp_path / "run"))
    assert res.code == 0, res.err
    assert "has no prior" not in res.err


def test_no_protocol_applies_is_refused_before_any_work(example: Any, tmp_path: Path) -> None:
    res = cli("run", "--model", "gauss", *SMALL, "--set", "train.steps=2",
              "--set", 'eval.protocols=["interpolation", "reconstruction"]',
              "--out", str(tmp_path / "run"))
    assert_error_line(res, 2, "no selected protocol applies to model 'gauss'",
                      "has no encoder")
    assert not (tmp_path / "run").exists()


def test_a_run_whose_every_protocol_fails_exits_1(example: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness_generative_example.gauss import LowRankGaussian

    def broken(self: Any, n: int, generator: torch.Generator) -> torch.Tensor:
        raise RuntimeError("sampler broken")

    monkeypatch.setattr(LowRankGaussian, "sample", broken)
    run = tmp_path / "run"
    res = cli("run", "--model", "gauss", *SMALL, *FEW_SAMPLES, "--set", "train.steps=2",
              "--set", 'eval.protocols=["random-generation", "fresh-samples"]',
              "--set", 'eval.metrics=["fid"]', "--out", str(run))
    assert res.code == 1, res.err
    assert "every protocol failed" in res.err and "sampler broken" in res.err
    doc = metrics(run)  # written, with every error
    assert {r["protocol"] for r in doc["results"] if r.get("error")} == {
        "random-generation", "fresh-samples"}


class _Declares:
    capabilities = frozenset({"sample", "encoder"})

    def sample(self, n: int, generator: Any) -> Any: ...

    def encode(self, x: Any) -> Any: ...


def test_a_declared_capability_without_its_method_is_refused_naming_the_plugin() -> None:
    with pytest.raises(PluginError, match="model 'm' from plugin 'p' declares capability "
                                          "'encoder' but has no decode"):
        api.check_model_class(_Declares, "model 'm' from plugin 'p'")
    with pytest.raises(PluginError, match="neither sample nor decode"):
        api.check_model_class(type("Nothing", (), {"capabilities": frozenset()}), "model 'x'")
    api.check_model_class(type("Legacy", (), {"encode": 1, "decode": 1}), "model 'y'")


def test_registration_refuses_it_through_the_command_line(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import hookimpl

    class Broken:
        @hookimpl
        def register_models(self, register: Any) -> None:
            register("half", _Declares, "declares an encoder it does not have")

    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "")
    plugins.load_host({"halfdone": Broken()})
    try:
        res = cli("run", "--model", "half", "--dataset", "digits", "--out", str(tmp_path / "r"))
    finally:
        plugins.reset_host()
    assert_error_line(res, 2, "plugin 'halfdone'", "'encoder'", "has no decode")
    assert not (tmp_path / "r").exists()


def test_capabilities_of_the_builtin_autoencoders() -> None:
    from harness_plugins.autoencoders.models import MODELS  # noqa: F401 - registered names

    from harness.api import DatasetInfo
    from harness.host.plugins import Host

    host = Host()
    host.load_entry_points()
    host.collect_components()
    info = DatasetInfo("t", (1, 8, 8))

    def caps(name: str, **values: Any) -> frozenset[str]:
        cls = host.get("model", name).load()
        return api.model_capabilities(cls.from_config(cls.Config(**values), info))

    assert caps("ae") == {"encoder", "reconstruct"}
    assert caps("vae", beta=1e-3) == {"encoder", "reconstruct", "prior"}
    assert caps("vae", beta=0.0) == {"encoder", "reconstruct"}


# ---------------------------------------------------------------------------- metrics by kind
def test_a_third_party_samples_protocol_gets_fid_and_kid(example: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = cli("run", "--model", "gauss", *SMALL, "--set", "train.steps=20",
              "--set", 'eval.protocols=["fresh-samples"]',
              "--set", "eval.fresh-samples.n_samples=150",
              "--set", 'eval.metrics=["fid", "kid"]', *SMALL_KID, "--out", str(run))
    assert res.code == 0, res.err
    got = values(metrics(run), "fresh-samples")
    assert got["fid"] > 0 and got["kid"] > 0 and got["kid_std"] >= 0


def test_fid_scores_by_kind_never_by_name() -> None:
    from harness_plugins.metrics.fid import FID, FIDConfig
    from harness_plugins.metrics.kid import KID, KIDConfig

    from harness.evaluation.evaluate import metric_scores

    class AnySamples:
        kind = "samples"

    class Recon:
        kind = "reconstructions"

    for metric in (FID(FIDConfig()), KID(KIDConfig())):
        assert metric_scores(metric, "third-party-name", AnySamples(), None)
        assert not metric_scores(metric, "random-generation", Recon(), None)


# ------------------------------------------------------------------ training steps it owns
def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def test_a_gan_owns_its_step_and_resumes_bit_for_bit(example: Any, tmp_path: Path) -> None:
    common = ["--model", "tiny-gan", *SMALL, "--set", "train.checkpoint_every=5",
              "--set", "train.log_every=1",
              "--set", "train.lr=0.001", "--set", "train.grad_clip=1.0", "--no-eval"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli("run", *common, "--set", "train.steps=12", "--out", str(whole)).code == 0
    first = cli("run", *common, "--set", "train.steps=5", "--out", str(split))
    assert first.code == 0, first.err
    again = cli("run", "--resume", *common, "--set", "train.steps=12", "--out", str(split))
    assert again.code == 0, again.err
    a, b = _weights(whole), _weights(split)
    assert set(a) == set(b) and any(k.startswith("discriminator") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (whole / "log.jsonl").read_text().splitlines()]
    parts = [r["loss"] for r in log if "loss" in r]
    assert parts and all(set(p) == {"d", "g"} and p["d"] > 0 and p["g"] > 0 for p in parts)


def test_each_update_applies_its_own_optimizer_only() -> None:
    """D's update leaves G's weights alone and G's update leaves D's (its loss reaches D's
    gradients, which are zeroed, not applied)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from harness.training.accel import ModelOwnedStep, model_optimizers
    from harness.training.lossguard import LossGuard

    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        from harness_generative_example.gan import TinyGAN, TinyGANConfig
    finally:
        sys.path.remove(str(PLUGIN_DIR))
    torch.manual_seed(0)
    model = TinyGAN(TinyGANConfig(z_dim=4, hidden=8), api.DatasetInfo("t", (1, 4, 4)))
    acc = Accelerator(cpu=True)
    opts = model_optimizers(model, SimpleNamespace(lr=0.1))
    step = ModelOwnedStep(acc, model, opts, grad_clip=None)
    seen: list[tuple[str, bool, bool]] = []
    real_step = step.prepared["discriminator"].step
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    g0 = [p.detach().clone() for p in model.generator.parameters()]

    def spy() -> None:
        real_step()
        seen.append(("discriminator",
                     any(not torch.equal(p, q) for p, q in zip(model.discriminator.parameters(), d0, strict=False)),
                     any(not torch.equal(p, q) for p, q in zip(model.generator.parameters(), g0, strict=False))))

    step.prepared["discriminator"].step = spy  # type: ignore[method-assign]
    guard = LossGuard(1, last_checkpoint=lambda: None, write_event=lambda r: None)
    out = step.run(torch.rand(6, 1, 4, 4), api.StepContext(step=0, seed=0), 1, guard)
    assert set(out) == {"d", "g"} and step.settled(1)
    assert seen == [("discriminator", True, False)]  # D moved, G not yet
    assert any(not torch.equal(p, q) for p, q in zip(model.generator.parameters(), g0, strict=False))
    assert all(p.grad is None for p in model.parameters())


def test_optimizer_set_state_round_trips() -> None:
    from harness.training.accel import OptimizerSet

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(3, 1)
    opts = {"a": torch.optim.Adam(a.parameters(), lr=0.1),
            "b": torch.optim.Adam(b.parameters(), lr=0.2)}
    for module, opt in ((a, opts["a"]), (b, opts["b"])):
        module(torch.ones(1, module.in_features)).sum().backward()
        opt.step()
    state = OptimizerSet(opts).state_dict()
    assert [g["optimizer"] for g in state["param_groups"]] == ["a", "b"]
    fresh = {"a": torch.optim.Adam(a.parameters(), lr=0.5),
             "b": torch.optim.Adam(b.parameters(), lr=0.5)}
    OptimizerSet(fresh).load_state_dict(state)
    for name in opts:
        want, got = opts[name].state_dict(), fresh[name].state_dict()
        assert want["param_groups"] == got["param_groups"]
        for i in want["state"]:
            assert torch.equal(want["state"][i]["exp_avg"], got["state"][i]["exp_avg"])


def test_the_nan_of_an_update_stops_the_run_before_it_is_applied(example: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    from harness_generative_example.gan import TinyGAN

    original = TinyGAN.training_step

    def nan_generator(self: Any, x: torch.Tensor, ctx: Any, update: Any) -> Any:
        def poisoned(name: str, loss: torch.Tensor) -> None:
            update(name, loss * float("nan") if name == "generator" and ctx.step == 2 else loss)
        return original(self, x, ctx, poisoned)

    monkeypatch.setattr(TinyGAN, "training_step", nan_generator)
    res = cli("run", "--model", "tiny-gan", *SMALL, "--set", "train.steps=6", "--no-eval",
              "--out", str(tmp_path / "run"))
    assert res.code == 1, res.err
    assert "loss part 'generator' is nan at step 3" in res.err


def test_an_owned_update_is_clipped_to_train_grad_clip() -> None:
    from accelerate import Accelerator

    from harness.training.accel import ModelOwnedStep
    from harness.training.lossguard import LossGuard

    class Line(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(5))

        def training_step(self, x: torch.Tensor, ctx: Any, update: Any) -> dict[str, Any]:
            loss = (1000.0 * (self.w - 1.0)).pow(2).sum()  # a huge gradient
            update("only", loss)
            return {"loss": loss.detach()}

    guard = LossGuard(1, last_checkpoint=lambda: None, write_event=lambda r: None)
    for clip, most in ((1e-3, 1e-3), (None, 1.0)):
        model = Line()
        opt = {"only": torch.optim.SGD(model.parameters(), lr=1.0)}
        ModelOwnedStep(Accelerator(cpu=True), model, opt, grad_clip=clip).run(
            torch.zeros(1), api.StepContext(), 1, guard)
        moved = float(model.w.detach().norm())
        assert (moved == pytest.approx(most, rel=1e-4)) if clip else moved > most


def _losses(run: Path) -> list[dict[str, float]]:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in log if "loss" in r]


def test_an_owned_step_trains_in_bf16_and_resumes_bit_for_bit(example: Any,
                                                              tmp_path: Path) -> None:
    """bf16 through Accelerate on the CPU (autocast around ``training_step``, the updates in
    float32): every loss finite, the weights float32 and moved, other weights than float32
    training gives (autocast really ran), and a resume ends on the uninterrupted run's
    weights bit for bit, as in float32."""
    common = ["--model", "tiny-gan", *SMALL, "--set", "train.checkpoint_every=5",
              "--set", "train.log_every=1", "--set", "train.lr=0.001", "--no-eval"]
    bf16 = [*common, "--set", "train.mixed_precision=bf16"]
    whole, split, fp32 = tmp_path / "whole", tmp_path / "split", tmp_path / "fp32"
    for args, out in ((bf16, whole), (common, fp32)):
        res = cli("run", *args, "--set", "train.steps=12", "--out", str(out))
        assert res.code == 0, res.err
    first = cli("run", *bf16, "--set", "train.steps=5", "--out", str(split))
    assert first.code == 0, first.err
    halfway = _weights(split)
    again = cli("run", "--resume", *bf16, "--set", "train.steps=12", "--out", str(split))
    assert again.code == 0, again.err
    env = json.loads((whole / "environment.json").read_text())
    assert env["mixed_precision"] == "bf16"
    parts = _losses(whole)
    assert len(parts) == 12
    assert all(torch.isfinite(torch.tensor([p["d"], p["g"]])).all() for p in parts)
    a, b, c = _weights(whole), _weights(split), _weights(fp32)
    assert all(t.dtype == torch.float32 for t in a.values())  # master weights stay float32
    assert set(a) == set(b) == set(halfway)
    for key in a:
        assert torch.equal(a[key], b[key]), key  # the resume, bit for bit
    assert any(not torch.equal(a[k], halfway[k]) for k in a)  # steps 6-12 moved them
    assert any(not torch.equal(a[k], c[k]) for k in a)  # bf16 is not float32 here


def test_fp16_on_the_cpu_is_refused_before_any_work(example: Any, tmp_path: Path) -> None:
    """Accelerate accepts fp16 on the CPU and trains in float32 without a word; the harness
    refuses it before loading data or writing a folder, and says what to use instead."""
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid here: the run would train on the GPU")
    res = cli("run", "--model", "tiny-gan", *SMALL, "--set", "train.steps=2",
              "--set", "train.mixed_precision=fp16", "--out", str(tmp_path / "run"))
    assert_error_line(res, 2, "train.mixed_precision=fp16 needs a GPU",
                      "train.mixed_precision=bf16")
    assert "loading dataset" not in res.err
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_fp16_accelerator_on_the_cpu(tmp_path: Path) -> None:
    """The same rule for Python callers that pass their own Accelerator to train()."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from harness.configuration.run_config import RunConfig, TrainConfig
    from harness.errors import ConfigError
    from harness.training.loop import train

    if torch.cuda.is_available():
        pytest.skip("fp16 is valid here")
    AcceleratorState._reset_state(reset_partial_state=False)
    try:
        acc = Accelerator(cpu=True, mixed_precision="fp16")
        config = RunConfig(model="x", dataset="digits", seed=0, train=TrainConfig(steps=1))
        with pytest.raises(ConfigError, match="fp16 needs a GPU"):
            train(torch.nn.Linear(1, 1), None, config, tmp_path / "run",  # type: ignore[arg-type]
                  accelerator=acc)
    finally:
        AcceleratorState._reset_state(reset_partial_state=False)
    assert not (tmp_path / "run").exists()


def test_the_benchmark_report_lists_what_does_not_apply(tmp_path: Path) -> None:
    from harness.benchmark.report import _not_applicable

    for name, model in (("a", "dcgan"), ("b", "dcgan"), ("c", "ae")):
        (tmp_path / name).mkdir()
        na = {"interpolation": f"does not apply: {model} has no encoder"} if model == "dcgan" \
            else {}
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"run": {"model": model, "dataset": "digits"}, "not_applicable": na}))
    state = {"runs": {n: {"phase": "final", "status": "done", "dir": n} for n in "abc"}}
    assert _not_applicable(state, tmp_path) == [
        ["digits", "dcgan", "interpolation", "does not apply: dcgan has no encoder"]]
