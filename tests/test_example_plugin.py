"""The example third-party plugin (tests/example_plugin).

Two parts:

* in process, always: the plugin's model and metric follow the public contracts
  (imported from the source tree, nothing installed);
* through the ``harness`` command line, only when the distribution
  ``harness-example-plugin`` is pip-installed (the tox ``plugin`` env does that, and sets
  ``HARNESS_REQUIRE_EXAMPLE_PLUGIN=1`` so that a missing plugin fails instead of skipping):
  it is listed, usable in ``harness run``, and hidden by ``HARNESS_LOAD_PLUGINS=''``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness import api

EXAMPLE_PLUGIN_DIR = Path(__file__).resolve().parent / "example_plugin"
DISTRIBUTION = "harness-example-plugin"


# ------------------------------------------------------------------------------ in process
@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    yield importlib.import_module("harness_example_plugin")


def registered(module: ModuleType, hook: str) -> list[tuple[str, Any, str]]:
    calls: list[tuple[str, Any, str]] = []
    getattr(module, hook)(register=lambda *args: calls.append(args))
    return calls


def test_registers_lazy_factories_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import harness_example_plugin as plugin\n"
        "calls = []\n"
        "plugin.register_models(lambda *args: calls.append(args))\n"
        "plugin.register_metrics(lambda *args: calls.append(args))\n"
        "assert [c[0] for c in calls] == ['tiny-ae', 'mean-intensity'], calls\n"
        "assert 'torch' not in sys.modules, 'the plugin imported torch'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE_PLUGIN_DIR)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_model_follows_the_generative_model_contract(example: ModuleType) -> None:
    import torch

    ((name, factory, description),) = registered(example, "register_models")
    assert (name, factory) == ("tiny-ae", "harness_example_plugin.model:TinyAE")
    assert description
    module, _, attr = factory.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    info = api.DatasetInfo(name="toy", shape=(1, 6, 5))
    model = cls.from_config(cls.Config(k=3, hidden=16), info)
    assert isinstance(model, api.GenerativeModel)
    assert (model.bottleneck_dim, model.min_batch_size) == (3, 1)

    torch.manual_seed(0)
    x = torch.rand(4, 1, 6, 5)
    codes = model.encode(x)
    assert codes.shape == (4, 3)
    images = model.decode(codes)
    assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1
    assert torch.equal(model.reconstruct(x), images)

    losses = model(x, api.StepContext(step=0, seed=0))
    expected = 100 * torch.linalg.norm(images - x) / torch.linalg.norm(x)
    assert set(losses) == {"total", "rec"}
    assert torch.allclose(losses["rec"], expected, rtol=1e-5)
    assert losses["total"] is losses["rec"]
    losses["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    model.calibrate([x], api.StepContext())  # a no-op, but part of the contract


def test_model_config_is_validated(example: ModuleType) -> None:
    from harness_example_plugin.model import TinyAE

    with pytest.raises(ValueError, match="model.k"):
        TinyAE.from_config(TinyAE.Config(k=0), api.DatasetInfo(name="toy", shape=(1, 2, 2)))


def test_metric_follows_the_metric_contract(example: ModuleType) -> None:
    import torch

    ((name, factory, description),) = registered(example, "register_metrics")
    assert (name, factory) == ("mean-intensity", "harness_example_plugin.metric:MeanIntensity")
    module, _, attr = factory.partition(":")
    metric = getattr(importlib.import_module(module), attr)()
    assert isinstance(metric, api.Metric)
    assert metric.name == "mean-intensity"
    assert set(metric.inputs) == {"samples"}
    info = api.DatasetInfo(name="toy", shape=(1, 2, 2))
    assert metric.applies(info)
    images = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    assert metric(images, None, info) == {"mean_intensity": pytest.approx(0.5)}
    assert metric(images[:1, :, :1], None, info, device="cpu") == {
        "mean_intensity": pytest.approx(0.5)
    }


def test_protocol_follows_the_protocol_contract(example: ModuleType) -> None:
    import torch

    ((name, factory, description),) = registered(example, "register_protocols")
    assert (name, factory) == ("latent-traversal",
                               "harness_example_plugin.protocol:LatentTraversal")
    module, _, attr = factory.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    protocol = cls(cls.Config(n_dims=2, n_steps=3, span=1.0))
    assert isinstance(protocol, api.EvaluationProtocol) and protocol.kind == "samples"

    class Linear(torch.nn.Module):  # decode = identity on 4 pixels: images are the codes
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], -1)

        def decode(self, c: torch.Tensor) -> torch.Tensor:
            return c.reshape(c.shape[0], 1, 2, 2)

    x = torch.tensor([[0.0, 0, 0, 0], [2, 4, 0, 0]]).reshape(2, 1, 2, 2)
    data = torch.utils.data.TensorDataset(x, torch.zeros(2))
    splits = api.DataSplits(api.DatasetInfo("toy", (1, 2, 2)), data, data)
    out = protocol.run(api.EvalContext(Linear(), splits, seed=0))
    # mean code (1, 2, 0, 0), std (sqrt 2, 2 sqrt 2, 0, 0): dim 0 walks 1 -/+ sqrt 2
    walked = out.data.reshape(2, 3, 4)
    assert walked[0, :, 0].tolist() == pytest.approx([1 - 2**0.5, 1, 1 + 2**0.5])
    assert walked[1, :, 1].tolist() == pytest.approx([2 - 8**0.5, 2, 2 + 8**0.5])
    # mean |step| over 2 dims x 2 steps x 4 pixels: one pixel moves per step
    expected = (2 * 2**0.5 + 2 * 8**0.5) / 16
    assert out.values["mean_step_change"] == pytest.approx(expected)
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="n_steps >= 2"):
        cls.Config(n_steps=1)


# ----------------------------------------------------------------- installed, through the CLI
def _installed() -> bool:
    try:
        metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture
def installed() -> None:
    if _installed():
        return
    if os.environ.get("HARNESS_REQUIRE_EXAMPLE_PLUGIN") == "1":
        pytest.fail(f"{DISTRIBUTION} is not installed, and HARNESS_REQUIRE_EXAMPLE_PLUGIN=1")
    pytest.skip(f"{DISTRIBUTION} is not installed (tox -e plugin installs it)")


def harness(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``harness`` command; ``env`` overrides environment variables."""
    script = Path(sys.executable).with_name("harness")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    environ = {**os.environ, "HARNESS_STRICT_PLUGINS": "1", **env}
    for name in ("HARNESS_LOAD_PLUGINS", "HARNESS_DISABLE_PLUGINS"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=environ, timeout=300
    )


def harness_json(*args: str, **env: str) -> Any:
    proc = harness(*args, "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.usefixtures("installed")
def test_plugins_lists_the_example_plugin() -> None:
    rows = {row["name"]: row for row in harness_json("plugins")}
    assert rows["example"] == {
        "name": "example",
        "version": metadata.version(DISTRIBUTION),
        "distribution": DISTRIBUTION,
        "builtin": False,
        "hooks": ["register_metrics", "register_models", "register_protocols", "register_suites"],
        "error": None,
        "warnings": [],
    }
    assert all(not row["builtin"] for row in rows.values())  # built-ins only with --all
    every = {row["name"]: row for row in harness_json("plugins", "--all")}
    assert every["autoencoders"]["builtin"] and "example" in every
    assert all(row["error"] is None for row in every.values())


@pytest.mark.usefixtures("installed")
def test_components_are_listed_with_their_plugin() -> None:
    models = {row["name"]: row for row in harness_json("models")}
    assert models["tiny-ae"]["plugin"] == "example"
    assert models["tiny-ae"]["description"]
    assert models["vae"]["plugin"] == "autoencoders"
    metrics = {row["name"]: row for row in harness_json("metrics")}
    assert metrics["mean-intensity"]["plugin"] == "example"


@pytest.mark.usefixtures("installed")
def test_listing_with_the_plugin_installed_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom harness.cli import main\n"
        "for command in (['plugins', '--all'], ['models'], ['protocols'], ['metrics']):\n"
        "    main(command)\n"
        "assert 'torch' not in sys.modules, 'listing imported torch'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "tiny-ae" in proc.stdout and "mean-intensity" in proc.stdout


@pytest.mark.usefixtures("installed")
def test_harness_run_uses_the_plugin_model_and_metric(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = harness(
        "run", "--model", "tiny-ae", "--dataset", "bumps", "--out", str(out),
        "--set", "train.steps=3", "--set", "train.batch_size=8", "--set", "model.k=2",
        "--set", "data.n_train=32", "--set", "data.n_test=8",
        "--set", 'eval.protocols=["reconstruction", "random-generation", "interpolation"]',
        "--set", 'eval.metrics=["mean-intensity"]', "--set", "eval.random-generation.n_samples=16",
        "--set", "eval.random-generation.gmm_components=2", "--set", "eval.interpolation.n_pairs=4", "--set", "eval.interpolation.n_interp=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "metrics.json").read_text())
    results = doc["results"]
    by_protocol = {r["protocol"]: r for r in results if r["metric"] == "mean_intensity"}
    assert set(by_protocol) == {"random-generation", "interpolation"}
    for record in by_protocol.values():
        assert record["source"] == "mean-intensity"
        assert 0.0 <= record["value"] <= 1.0
    (rec,) = [r for r in results if r["metric"] == "rec_error_percent"]
    assert math.isfinite(rec["value"]) and rec["value"] > 0
    assert "mean_intensity" in proc.stdout  # the summary printed by `harness run`


@pytest.mark.usefixtures("installed")
def test_a_third_party_protocol_is_listed_run_stamped_and_reported(tmp_path: Path) -> None:
    (row,) = [r for r in harness_json("protocols") if r["name"] == "latent-traversal"]
    assert row["plugin"] == "example" and row["default"] is False
    out = tmp_path / "run"
    proc = harness(
        "run", "--model", "tiny-ae", "--dataset", "bumps", "--out", str(out),
        "--set", "train.steps=3", "--set", "train.batch_size=8", "--set", "model.k=3",
        "--set", "data.n_train=32", "--set", "data.n_test=8",
        "--set", 'eval.protocols=["reconstruction", "latent-traversal"]',
        "--set", 'eval.metrics=["mean-intensity"]',
        "--set", "eval.latent-traversal.n_steps=4", "--set", "eval.latent-traversal.n_dims=3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "metrics.json").read_text())["results"]
    by = {(r["protocol"], r["metric"]): r for r in results}
    change = by["latent-traversal", "mean_step_change"]
    assert change["source"] == "protocol" and change["value"] > 0
    assert change["stamp"]["n_steps"] == 4 and change["stamp"]["n_dims"] == 3
    assert change["stamp"]["protocol_version"] == 1
    # the plugin's metric scores the plugin's protocol: it declares inputs = ("samples",)
    assert 0.0 <= by["latent-traversal", "mean_intensity"]["value"] <= 1.0
    assert (out / "images" / "latent-traversal.png").is_file()
    config = (out / "config.toml").read_text()
    assert "[eval.latent-traversal]" in config and "n_steps = 4" in config
    report = harness("report", "--format", "markdown", str(out))
    assert report.returncode == 0, report.stderr
    assert "latent-traversal/mean_step_change" in report.stdout
    text = harness("report", str(out))  # the terminal table: the plugin's block and column
    assert text.returncode == 0 and "latent-traversal" in text.stdout.splitlines()
    assert "mean_step_change" in text.stdout
    bad = harness("run", "--model", "tiny-ae", "--set", 'eval.protocols=["latent-traversal"]',
                  "--set", "eval.latent-traversal.n_step=4", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "valid keys in [eval.latent-traversal]: n_dims, n_steps, span" in bad.stderr


@pytest.mark.usefixtures("installed")
def test_load_plugins_empty_hides_the_plugin() -> None:
    every = {row["name"] for row in harness_json("plugins", "--all", HARNESS_LOAD_PLUGINS="")}
    assert "example" not in every
    assert {"autoencoders", "datasets", "metrics"} <= every
    assert "tiny-ae" not in {row["name"] for row in harness_json("models", HARNESS_LOAD_PLUGINS="")}
    assert harness_json("plugins", HARNESS_LOAD_PLUGINS="") == []
    proc = harness("run", "--model", "tiny-ae", HARNESS_LOAD_PLUGINS="")
    assert proc.returncode == 2
    assert "model 'tiny-ae' is not known" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("env", "listed"),
    [
        ({"HARNESS_LOAD_PLUGINS": "example"}, True),
        ({"HARNESS_LOAD_PLUGINS": "someone-else"}, False),
        ({"HARNESS_DISABLE_PLUGINS": "example"}, False),
        ({"HARNESS_DISABLE_PLUGINS": "metrics"}, True),
        ({"HARNESS_LOAD_PLUGINS": DISTRIBUTION}, True),
        ({"HARNESS_DISABLE_PLUGINS": "harness_example_plugin"}, False),
    ],
)
def test_escape_hatches(env: dict[str, str], listed: bool) -> None:
    models = {row["name"] for row in harness_json("models", **env)}
    assert ("tiny-ae" in models) is listed
