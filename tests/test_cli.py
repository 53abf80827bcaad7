"""The command line, end to end, on the embedded bumps dataset and the real built-ins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import builtin_plugins_only
from conftest import cpu_subprocess_env

from harness import hookimpl
from harness.cli import main
from harness.configuration.run_config import tomllib

FAST = [
    "--set", "train.steps=4", "--set", "train.batch_size=16", "--set", "train.log_every=1",
    "--set", "eval.random-generation.n_samples=40", "--set", "eval.interpolation.n_pairs=8", "--set", "eval.random-generation.gmm_components=2",
    "--set", "data.n_train=40", "--set", "data.n_test=16", "--set", "model.latent_dim=32",
]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_listings_show_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)}
    seven = {"ae", "vae", "rrae", "vrrae", "rrae-vae", "vae-identity", "vrrae-nokl"}
    assert set(models) >= seven
    assert all(models[n]["plugin"] == "autoencoders" and models[n]["description"] for n in seven)
    code, out, _ = run_cli(["datasets", "--json"], capsys)
    assert {d["name"] for d in json.loads(out)} >= {
        "bumps", "mnist", "fashion-mnist", "cifar10", "celeba", "digits"}
    code, out, _ = run_cli(["plugins", "--all", "--json"], capsys)
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["autoencoders"]["builtin"] is True
    assert "register_models" in plugins["autoencoders"]["hooks"]
    assert "register_datasets" in plugins["datasets"]["hooks"]
    assert all(p["error"] is None for p in plugins.values())


def test_listing_is_fast_and_does_not_import_torch() -> None:
    # CPU seconds, not wall seconds: a loaded machine stretches the wall time of both
    # measurements by whatever else runs, but not the work each does
    code = (
        "import sys, time; t = time.process_time();"
        "from harness.cli import main\n"
        "try:\n main(['models'])\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'listing imported torch';"
        "print(time.process_time() - t, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)  # a guard against a hang only
    assert proc.returncode == 0, proc.stderr
    listing = float(proc.stderr.strip().splitlines()[-1])
    # against a reference measured now: importing torch, which listing must not do, costs
    # several times what the whole listing may
    ref = subprocess.run([sys.executable, "-c", "import sys, time; t = time.process_time(); "
                          "import torch; print(time.process_time() - t, file=sys.stderr)"],
                         capture_output=True, text=True, timeout=600)
    torch_import = float(ref.stderr.strip().splitlines()[-1])
    assert listing < 0.5 * torch_import, (listing, torch_import)


def test_unknown_names_and_bad_keys_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "--model", "vrae"], capsys)
    assert code == 2
    assert "model 'vrae' is not known; did you mean" in err and "'vrrae'" in err and "Known:" in err
    code, _, err = run_cli(["run", "--model", "vrrae", "--dataset", "cifar"], capsys)
    assert code == 2 and "dataset 'cifar' is not known; did you mean 'cifar10'?" in err
    code, _, err = run_cli(["run", "--model", "vrrae", "--set", "train.batchsize=3"], capsys)
    assert code == 2 and "unknown key 'train.batchsize'" in err and "batch_size" in err
    code, _, err = run_cli(["run", "--model", "vrrae", "--set", "model.kk=3"], capsys)
    assert code == 2 and "unknown key 'model.kk'" in err and "latent_dim" in err
    assert "Traceback" not in err


def test_batch_smaller_than_k_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "--model", "rrae", "--set", "model.k=8",
                            "--set", "train.batch_size=4", "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert "train.batch_size=4" in err and "k" in err


class SampleCounter:
    """An in-test metric scoring every protocol that makes samples: the number of images.
    On the bumps no built-in metric scores interpolation, so without it whether interpolation
    has a record (with its stamp) would depend on the third-party plugins the process-wide
    host happened to load (the example plugin's ``mean-intensity``)."""

    name = "sample-count"
    higher_is_better = False
    inputs = ("samples",)

    def __call__(self, images, reference, info, *, device=None):  # type: ignore[no-untyped-def]
        return {"n_images": float(images.shape[0])}


class SampleCounterPlugin:
    @hookimpl
    def register_metrics(self, register) -> None:  # type: ignore[no-untyped-def]
        register("sample-count", SampleCounter, "number of images (test metric)")


@pytest.fixture
def pinned_plugins():  # type: ignore[no-untyped-def]
    """The built-in plugins plus :class:`SampleCounterPlugin`, and nothing installed on the
    machine: the set of metrics, and so of records, is the same in every environment."""
    from harness.host import plugins

    with builtin_plugins_only():
        plugins.load_host(plugins={"sample-counter": SampleCounterPlugin()})
        yield


@pytest.mark.usefixtures("pinned_plugins")
def test_run_writes_a_complete_reproducible_run(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, err = run_cli(["run", "--model", "vrrae", "--dataset", "bumps", "--seed", "3",
                                 "--out", str(out), *FAST], capsys)
    assert code == 0, err
    for name in ("config.toml", "environment.json", "metrics.json", "model.safetensors",
                 "model_config.json", "log.jsonl"):
        assert (out / name).is_file(), name
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["run"] == {"model": "vrrae", "dataset": "bumps", "seed": 3,
                             "preset": "autoencoders:synthetic"}
    assert config["train"]["steps"] == 4 and config["model"]["latent_dim"] == 32
    env = json.loads((out / "environment.json").read_text())
    assert env["num_processes"] == 1 and env["packages"]["torch"]
    # the device Accelerate picks on this machine: "cuda"/"cuda:0" where there is a GPU
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert "git_revision" in env and env["device"].split(":")[0] == want
    model_config = json.loads((out / "model_config.json").read_text())
    assert model_config["model"] == "vrrae" and model_config["info"]["shape"] == [1, 64, 64]
    assert model_config["config"]["latent_dim"] == 32
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["seed"] == 3
    rec = [r for r in metrics["results"] if r["protocol"] == "reconstruction"]
    assert len(rec) == 1 and 0.0 < rec[0]["value"] < 200.0
    assert all("stamp" in r and r["protocol"] for r in metrics["results"])
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs][-1] == 4
    assert "run directory:" in stdout

    # Re-running from the saved config gives the same numbers (same seed, same machine).
    again = tmp_path / "again"
    code, _, err = run_cli(["run", "--config", str(out / "config.toml"), "--out", str(again)],
                           capsys)
    assert code == 0, err
    rec2 = [r for r in json.loads((again / "metrics.json").read_text())["results"]
            if r["protocol"] == "reconstruction"]
    assert rec2[0]["value"] == pytest.approx(rec[0]["value"], rel=1e-5)

    # Re-evaluating the saved run reproduces the reconstruction error from the weights alone.
    code, _, err = run_cli(["evaluate", str(out)], capsys)
    assert code == 0, err
    rec3 = [r for r in json.loads((out / "metrics.json").read_text())["results"]
            if r["protocol"] == "reconstruction"]
    assert rec3[0]["value"] == pytest.approx(rec[0]["value"], rel=1e-5)

    # `evaluate --set` with a bad value changes nothing; a good one keeps the old metrics.
    before = {n: (out / n).read_bytes()
              for n in ("config.toml", "metrics.json", "metrics.prev.json")}
    for bad in ("eval.interpolation.n_pairs=0", 'eval.protocols=["bogus"]', "eval.batch_size=0",
                "eval.n_pairs=5", "eval.random-generation.gmm_components=0"):
        code, _, err = run_cli(["evaluate", str(out), "--set", bad], capsys)
        assert code == 2 and err.startswith("Error: ") and "Traceback" not in err, (bad, err)
        assert {n: (out / n).read_bytes() for n in before} == before, bad
    code, _, err = run_cli(["evaluate", str(out), "--set", "eval.interpolation.n_pairs=3"],
                           capsys)
    assert code == 0, err
    assert (out / "metrics.prev.json").read_bytes() == before["metrics.json"]
    assert tomllib.loads((out / "config.toml").read_text())["eval"]["interpolation"][
        "n_pairs"] == 3
    code, _, err = run_cli(["evaluate", str(out)], capsys)  # and plain evaluate still works
    assert code == 0, err
    stamps = {r["stamp"]["n_pairs"] for r in json.loads((out / "metrics.json").read_text())[
        "results"] if r["protocol"] == "interpolation"}
    assert stamps == {3}

    # The run directory cannot be overwritten by accident.
    code, _, err = run_cli(["run", "--model", "vrrae", "--out", str(out)], capsys)
    assert code == 2 and "already holds a run" in err

    code, table, err = run_cli(["report", str(out), str(again)], capsys)
    assert code == 0, err
    assert any(line.split()[:3] == ["vrrae", "bumps", "2"] for line in table.splitlines())


SEVEN = ["ae", "vae", "rrae", "vrrae", "rrae-vae", "vae-identity", "vrrae-nokl"]
TINY_EVAL = ["--set", "eval.random-generation.n_samples=12", "--set", "eval.interpolation.n_pairs=3", "--set",
             "eval.random-generation.gmm_components=1", "--set", "eval.metrics=[\"collapse\"]"]


@pytest.mark.parametrize("model", SEVEN)
def test_every_model_trains_and_evaluates_on_bumps(model: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / model
    code, _, err = run_cli(["run", "--model", model, "--out", str(out),
                            "--set", "train.steps=3", "--set", "train.batch_size=8",
                            "--set", "data.n_train=16", "--set", "data.n_test=8", *TINY_EVAL],
                           capsys)
    assert code == 0, err
    doc = json.loads((out / "metrics.json").read_text())
    rec = [r["value"] for r in doc["results"] if r["protocol"] == "reconstruction"]
    assert len(rec) == 1 and 0.0 < rec[0] < 1e4
    collapse = [r for r in doc["results"] if r["metric"] == "active_dims"]
    assert collapse and collapse[0]["value"] + [r for r in doc["results"]
                                                if r["metric"] == "collapsed_dims"][0]["value"] == 2
    assert doc["training"]["steps"] == 3


@pytest.mark.parametrize("model", SEVEN)
def test_every_model_trains_on_mnist_shaped_idx_files(model: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from datasets_fixtures import write_idx

    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, n in (("train", 24), ("t10k", 8)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, size=n, dtype=np.uint8))
    sets = ["--set", "model.k=4", "--set", "train.steps=3", "--set", "train.batch_size=8",
            "--set", f"data.root={root}", "--set", "eval.protocols=[\"reconstruction\"]"]
    if model in {"rrae", "vrrae", "rrae-vae", "vrrae-nokl"}:
        sets += ["--set", "model.latent_dim=16"]
    out = tmp_path / "run"
    code, _, err = run_cli(["run", "--model", model, "--dataset", "mnist", "--out", str(out),
                            *sets], capsys)
    assert code == 0, err
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["run"]["dataset"] == "mnist"
    info = json.loads((out / "model_config.json").read_text())["info"]
    assert info["shape"] == [1, 28, 28] and info["num_classes"] == 10
    rec = [r["value"] for r in doc["results"] if r["protocol"] == "reconstruction"]
    assert len(rec) == 1 and 0.0 < rec[0] < 1e4


def test_resume_through_the_cli_reaches_the_uninterrupted_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cpu_only: None) -> None:
    # on the CPU: GPU kernels (cuDNN convolutions) need not be bit-reproducible between two
    # runs; resuming on CUDA is checked to a tolerance in test_cuda.py
    from safetensors.torch import load_file

    common = ["--model", "vrrae", "--seed", "5", "--set", "train.batch_size=8",
              "--set", "data.n_train=16", "--set", "model.latent_dim=16",
              "--set", "train.checkpoint_every=3", "--no-eval"]
    full = tmp_path / "full"
    code, _, err = run_cli(["run", *common, "--set", "train.steps=6", "--out", str(full)], capsys)
    assert code == 0, err
    # An "interrupted" run: trained to step 3 of 6, as if stopped there.
    part = tmp_path / "part"
    code, _, err = run_cli(["run", *common, "--set", "train.steps=3", "--out", str(part)], capsys)
    assert code == 0, err
    config = (part / "config.toml").read_text().replace("steps = 3", "steps = 6")
    (part / "config.toml").write_text(config)
    (part / "model.safetensors").unlink()
    code, _, err = run_cli(["run", "--resume", "--out", str(part), "--model", "ae"], capsys)
    assert code == 2 and "as model 'ae': the run trains 'vrrae'" in err
    code, _, err = run_cli(["run", "--resume", "--out", str(part)], capsys)
    assert code == 0, err
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key].double() - b[key].double()).abs().max().item() < 1e-6, key
    steps = [json.loads(line)["step"] for line in (part / "log.jsonl").read_text().splitlines()
             if "step" in json.loads(line)]
    assert steps[-1] == 6
    training = json.loads((part / "metrics.json").read_text())["training"]
    assert training["start_step"] == 3 and training["steps"] == 6  # continued, not restarted


def test_a_non_finite_loss_exits_1_naming_step_and_part(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nan"
    code, _, err = run_cli(["run", "--model", "vae", "--out", str(out), "--set", "train.lr=1e30",
                            "--set", "train.optimizer=adam", "--set", "train.steps=40",
                            "--set", "train.batch_size=8", "--set", "data.n_train=16",
                            "--set", "train.checkpoint_every=1"], capsys)
    assert code == 1, err
    assert re.search(r"loss part '\w+' is (nan|-?inf) at step \d+", err), err
    assert not (out / "metrics.json").exists()
    assert (out / "checkpoints" / "latest").is_file()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
def test_ae_runs_offline_on_the_real_fashion_mnist(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fmnist"
    code, _, err = run_cli(["run", "--model", "ae", "--dataset", "fashion-mnist", "--out", str(out),
                            "--set", "train.steps=5", "--set", "data.n_train=512",
                            "--set", "train.batch_size=64",  # the preset's 576 > 512 images
                            "--set", "data.n_test=128", "--set", "model.k=8", *TINY_EVAL], capsys)
    assert code == 0, err
    env = json.loads((out / "environment.json").read_text())
    assert env["num_processes"] == 1
    info = json.loads((out / "model_config.json").read_text())["info"]
    assert info == {"name": "fashion-mnist", "shape": [1, 28, 28], "num_classes": 10}
    rec = [r for r in json.loads((out / "metrics.json").read_text())["results"]
           if r["protocol"] == "reconstruction"][0]
    assert rec["stamp"]["dataset"] == "fashion-mnist" and 0.0 < rec["value"] < 200.0


def test_a_run_that_cannot_start_writes_nothing(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    code, _, err = run_cli(["run", "--model", "ae", "--dataset", "mnist", "--out", str(out),
                            "--set", f"data.root={tmp_path / 'empty'}"], capsys)
    assert code == 2 and "data.root" in err
    assert not out.exists()  # a corrected re-run can use the same --out


@pytest.mark.distributed
def test_harness_run_works_unchanged_under_accelerate_launch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cpu_only: None) -> None:
    # two CPU processes (gloo) whatever GPUs the machine has (none visible to the launch:
    # `accelerate launch --cpu` would start a single process), compared with one CPU process
    args = ["run", "--model", "vrrae", "--seed", "1", "--set", "train.steps=5",
            "--set", "train.batch_size=16", "--set", "data.n_train=32",
            "--set", "model.latent_dim=16", "--set", "eval.protocols=[\"reconstruction\"]"]
    two = tmp_path / "two"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
         "--num_processes", "2", "-m", "harness.cli", *args, "--out", str(two)],
        capture_output=True, text=True, timeout=1800, env=cpu_subprocess_env(),  # hang guard
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # only the main process reports
    assert json.loads((two / "environment.json").read_text())["num_processes"] == 2
    one = tmp_path / "one"
    code, _, err = run_cli([*args, "--out", str(one)], capsys)
    assert code == 0, err

    def rec(run: Path) -> float:
        doc = json.loads((run / "metrics.json").read_text())
        return [r["value"] for r in doc["results"] if r["protocol"] == "reconstruction"][0]

    # global batch 16 = 2 x 8: the SVD and the loss see the same batch, so the numbers agree
    assert rec(two) == pytest.approx(rec(one), rel=1e-4)
    losses = [json.loads(x)["loss"]["total"] for x in (two / "log.jsonl").read_text().splitlines()]
    ref = [json.loads(x)["loss"]["total"] for x in (one / "log.jsonl").read_text().splitlines()]
    assert losses == pytest.approx(ref, rel=1e-4)


def test_save_samples_exports_what_was_scored(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(["run", "--model", "rrae", "--out", str(out), "--save-samples", *FAST,
                            "--set", 'eval.protocols=["random-generation", "interpolation"]',
                            "--set", 'eval.metrics=["collapse"]'], capsys)
    assert code == 0, err
    samples = out / "samples"
    rg = np.load(samples / "random-generation.npz")["images"]
    assert rg.shape == (40, 64, 64, 1) and rg.dtype == np.uint8  # N×H×W×C, 8 bits
    assert np.load(samples / "interpolation.npz")["images"].shape == (8 * 5, 64, 64, 1)
    pngs = sorted((samples / "random-generation").glob("*.png"))
    assert len(pngs) == 40 and pngs[0].name == "000000.png"
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(pngs[3])), rg[3, :, :, 0])
    # `harness samples` re-exports the same images and leaves metrics.json alone
    metrics = (out / "metrics.json").read_bytes()
    (samples / "random-generation.npz").unlink()
    code, stdout, err = run_cli(["samples", str(out)], capsys)
    assert code == 0, err
    assert "samples written to" in stdout
    assert np.array_equal(np.load(samples / "random-generation.npz")["images"], rg)
    assert (out / "metrics.json").read_bytes() == metrics
