"""The compiled mode (train.compile): what is compiled, refusals with a reason, and (slow)
the same losses as eager mode on a tiny model on CPU."""

from __future__ import annotations

import json

import pytest
import torch
from harness_plugins.autoencoders import models
from harness_plugins.datasets import digits

from harness.api import DataConfig
from harness.configuration.run_config import RunConfig, TrainConfig, parse_set
from harness.errors import ConfigError
from harness.training import compile as hcompile
from harness.training.loop import seed_everything, train


def _tiny(splits):  # type: ignore[no-untyped-def]
    seed_everything(0)
    cfg = models.VRRAE.Config(k=4, latent_dim=16, arch="mlp", hidden=32, beta=1e-3)
    return models.VRRAE.from_config(cfg, splits.info)


def test_off_by_default_and_off_compiles_nothing() -> None:
    assert TrainConfig().compile is False
    assert parse_set(["train.compile=true"]) == {"train": {"compile": "true"}}
    model = _tiny(digits.load(DataConfig()))
    assert hcompile.maybe_compile(model, TrainConfig(), "cpu") == []
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


def test_targets_are_the_networks_or_the_whole_model() -> None:
    model = _tiny(digits.load(DataConfig()))
    targets = hcompile.compile_targets(model)
    assert model.encoder in targets and model.decoder in targets and model not in targets
    bare = torch.nn.Module()
    bare.weight = torch.nn.Parameter(torch.zeros(2))
    assert hcompile.compile_targets(bare) == [bare]


def test_compiling_in_place_keeps_parameter_names() -> None:
    model = _tiny(digits.load(DataConfig()))
    keys = list(model.state_dict())
    compiled = hcompile.maybe_compile(model, TrainConfig(compile=True), "cpu")
    assert compiled and all(m._compiled_call_impl is not None for m in compiled)
    assert list(model.state_dict()) == keys  # no "_orig_mod." prefixes in checkpoints


def test_unsupported_setups_are_refused_with_the_way_out(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(hcompile, "cxx_compiler", lambda: None)
    with pytest.raises(ConfigError, match=r"needs a C\+\+ compiler.*train.compile=false"):
        hcompile.check_compile_supported("cpu")
    with pytest.raises(ConfigError, match="not 'mps'"):
        hcompile.check_compile_supported("mps")
    monkeypatch.setattr(hcompile.sys, "platform", "win32")
    with pytest.raises(ConfigError, match="Windows"):
        hcompile.check_compile_supported("cpu")


def test_the_compiler_lookup_honours_cxx(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "my-cxx"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CXX", "my-cxx")
    assert hcompile.cxx_compiler() == "my-cxx"
    monkeypatch.delenv("CXX")
    assert hcompile.cxx_compiler() is None


def _losses(tmp_path, compiled: bool) -> tuple[list[float], list[str]]:  # type: ignore[no-untyped-def]
    splits = digits.load(DataConfig())
    model = _tiny(splits)
    config = RunConfig(model="vrrae", dataset="digits", seed=0,
                       train=TrainConfig(steps=20, batch_size=64, log_every=1,
                                         compile=compiled))
    run_dir = tmp_path / ("compiled" if compiled else "eager")
    result = train(model, splits, config, run_dir)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"]["total"] for r in records], list(result.model.state_dict())


@pytest.mark.slow
def test_compiled_training_matches_eager_on_cpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if hcompile.cxx_compiler() is None:
        pytest.skip("no C++ compiler: inductor cannot compile CPU code here")
    eager, eager_keys = _losses(tmp_path, False)
    compiled, compiled_keys = _losses(tmp_path, True)
    assert len(eager) == len(compiled) == 20
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)
    assert eager[-1] < eager[0]  # it trained
    assert compiled_keys == eager_keys
