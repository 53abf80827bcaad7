"""Time per training step: bare loops against `harness run`, as ratios measured in one run.

    python benchmarks/bench_gpu.py [--device cpu|cuda] [--configs NAME,...] [--write]

On CUDA (the default where there is a GPU) it prints the table of issue #12; on CPU the
small-model case of the same issue (the default there). Per configuration, each on the same
data, model configuration, batch and AdaBelief settings:

* **bare**: a loop written here around a hand-written equivalent of the network and loss
  (only for ``fmnist-mlp-ae``, whose network is three lines): the training split held as
  ONE uint8 tensor on the device, each batch one indexing op + ``float() / 255``;
* **model-bare**: the same loop around *our* model (built by the harness from the run's
  configuration, ``forward(x, ctx)`` with a ``StepContext`` per step);
* **harness**: ``python -m harness.cli run`` with default settings (``--no-eval``), as a
  subprocess; its time per step is read from its own log: (``time`` at the last record −
  ``time`` at the warm-up record) / steps, so start-up, the final checkpoint and calibration
  are excluded and everything per step (data, checks, logging, periodic checkpoints) is in;
* **compiled**: the same with ``--set train.compile=true`` (compilation falls in the
  warm-up steps); "n/a" with the reason where it is not supported.

Data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` when installed, else random
uint8 images written as IDX files (speed does not depend on the pixels); bumps is generated.
Ratios are against model-bare (and bare where there is one). Wall time; on a shared CPU
the bare loop is timed before and after the harness runs and the median kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, write_results  # noqa: E402

from harness.training.resources import tune_malloc  # noqa: E402

RESULTS = Path(__file__).parent / "results"
#: Fashion-MNIST's IDX files: under $HARNESS_DATA_ROOT when there, else Debian's package
FASHION = next((p for p in (Path(os.environ.get("HARNESS_DATA_ROOT", "/nonexistent"))
                            / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))
                if (p / "train-images-idx3-ubyte.gz").is_file()),
               Path("/usr/share/datasets/fashion-mnist"))
#: random CelebA-format images (aligned 178x218 JPEGs): enough for a few epochs of 576
CELEBA_TRAIN, CELEBA_TEST = 2304, 64

#: name -> (model, dataset, --set overrides, batch, bare reference available)
CONFIGS: dict[str, dict] = {
    # issue #12 goal 1 on CPU: data handling is the step when the model is this small
    "fmnist-mlp-ae": dict(model="ae", dataset="fashion-mnist", batch=576,
                          sets=["model.arch=mlp", "model.hidden=16", "model.k=4"]),
    # the GPU table: the paper's CNN at the MNIST configuration ...
    "mnist-vrrae-conv": dict(model="vrrae", dataset="fashion-mnist", batch=576,
                             sets=["model.latent_dim=100", "model.k=16"]),
    # ... and the small bumps model, where per-step overhead shows
    "bumps-vrrae-conv": dict(model="vrrae", dataset="bumps", batch=64,
                             sets=["model.latent_dim=200", "model.k=2"]),
    # ... and the paper's CelebA configuration (3x160x160, L=512, k=186), random images
    "celeba-vrrae-conv": dict(model="vrrae", dataset="celeba", batch=576,
                              sets=["model.latent_dim=512", "model.k=186"]),
}
DEFAULTS = {"cpu": ["fmnist-mlp-ae"],
            "cuda": ["mnist-vrrae-conv", "bumps-vrrae-conv", "fmnist-mlp-ae"]}


# ----------------------------------------------------------------------------- data
def data_sets(name: str, scratch: Path) -> list[str]:
    """``--set`` options pointing the dataset at its files (generated when not installed)."""
    case = CONFIGS[name]
    if case["dataset"] == "celeba":
        return [f"data.root={write_celeba(scratch / 'celeba')}"]
    if case["dataset"] != "fashion-mnist" or (FASHION / "train-images-idx3-ubyte.gz").is_file():
        return [f"data.root={FASHION}"] if case["dataset"] == "fashion-mnist" else []
    from harness_plugins.datasets.idx import write_idx

    folder = scratch / "fashion-mnist"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for stem, n in (("train", 60_000), ("t10k", 10_000)):
            write_idx(folder / f"{stem}-images-idx3-ubyte",
                      rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(folder / f"{stem}-labels-idx1-ubyte",
                      rng.integers(0, 10, n, dtype=np.uint8))
    return [f"data.root={folder}"]


def write_celeba(folder: Path) -> Path:
    """Random uint8 images in CelebA's aligned layout (``img_align_celeba/NNNNNN.jpg``, 178x218,
    and ``list_eval_partition.txt``): the step time does not depend on the pixels."""
    if (folder / "list_eval_partition.txt").is_file():
        return folder
    from PIL import Image

    images = folder / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(CELEBA_TRAIN + CELEBA_TEST):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(images / name)
        lines.append(f"{name} {0 if i < CELEBA_TRAIN else 2}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return folder


def data_source(sets: list[str], dataset: str) -> str:
    if dataset == "bumps":
        return "generated (bumps)"
    if dataset == "celeba":
        return f"random CelebA-format JPEGs ({CELEBA_TRAIN} train)"
    return str(FASHION) if f"data.root={FASHION}" in sets else "random IDX files"


# ----------------------------------------------------------------------------- bare loops
class ReferenceAE(torch.nn.Module):
    """The ``ae`` model with ``arch=mlp`` written out: 784-h-h-k-h-h-784, ReLU, loss
    ``100 * ||x_hat - x|| / ||x||`` over the batch."""

    def __init__(self, d: int, hidden: int, k: int) -> None:
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, k))
        self.dec = torch.nn.Sequential(torch.nn.Linear(k, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, ctx: object = None) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)
        err = (self.dec(self.enc(flat)) - flat).pow(2).sum()
        return {"total": 100.0 * torch.sqrt(err / flat.pow(2).sum())}


def bare_loop(model: torch.nn.Module, images: torch.Tensor, batch: int, device: torch.device,
              warmup: int, steps: int, ctx_per_step: bool) -> float:
    """Seconds per step of the plainest loop: one uint8 (or float) tensor on the device,
    a device permutation per epoch, one indexing op per batch."""
    from harness.api import StepContext
    from harness.configuration.run_config import TrainConfig
    from harness.training.loop import build_optimizer

    model.to(device).train()
    opt = build_optimizer(model.parameters(), TrainConfig())
    n = images.shape[0]
    per_epoch = n // batch
    perm = torch.randperm(n, device=device)
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        b = step % per_epoch
        if b == 0 and step:
            perm = torch.randperm(n, device=device)
        x = images[perm[b * batch:(b + 1) * batch]]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        ctx = StepContext(step=step, seed=0, device=device) if ctx_per_step else None
        loss = model(x, ctx)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def our_model_and_images(name: str, sets: list[str], device: torch.device
                         ) -> tuple[torch.nn.Module, torch.Tensor]:
    """Our model, built as `harness run` builds it, and the training split as one tensor."""
    from harness.host.plugins import get_host
    from harness.run.build import build_model, load_data, resolve_config
    from harness.training.loop import seed_everything

    case = CONFIGS[name]
    host = get_host()
    config = resolve_config(model=case["model"], dataset=case["dataset"],
                                   config_file=None, sets=[*case["sets"], *sets], seed=0,
                                   host=host)
    splits = load_data(host, config)
    seed_everything(0)
    model = build_model(host, config, splits.info)
    images = torch.from_numpy(np.array(splits.train.images)).to(device)  # a writable copy
    return model, images


# ----------------------------------------------------------------------------- harness run
def harness_run(name: str, sets: list[str], device: torch.device, warmup: int, steps: int,
                extra: list[str], scratch: Path, pythonpath: str | None) -> dict:
    """Seconds per step of `harness run` (defaults plus ``extra``), from its log."""
    case = CONFIGS[name]
    out = Path(tempfile.mkdtemp(dir=scratch, prefix="run-"))
    out.rmdir()
    args = [sys.executable, "-m", "harness.cli", "run", "--model", case["model"],
            "--dataset", case["dataset"], "--out", str(out), "--no-eval", "--seed", "0",
            "--set", f"train.batch_size={case['batch']}",
            "--set", f"train.steps={warmup + steps}"]
    for item in [*case["sets"], *sets, *extra]:
        args += ["--set", item]
    env = dict(os.environ)
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    # `python -m` puts the working directory first on sys.path: run from the tree timed
    cwd = pythonpath or str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in records if "time" in r}
    if warmup not in by_step or warmup + steps not in by_step:
        return {"error": f"log records at steps {warmup} and {warmup + steps} needed "
                         "(train.log_every must divide both)"}
    window = [r for s, r in by_step.items() if warmup < s <= warmup + steps]
    span = by_step[warmup + steps]["time"] - by_step[warmup]["time"]
    waits = [r["data_wait"] for r in window]
    peak = {k: v for k, v in records[-1].items() if k.startswith("peak_")}
    return {"s_per_step": span / steps, "data_wait": statistics.fmean(waits),
            "process_wall_s": wall, **peak}


def combine(results: list[dict]) -> dict:
    """The median over repeats of `harness run` results (the first error if any failed)."""
    failed = [r for r in results if "error" in r]
    if failed or not results:
        return failed[0] if failed else {"error": "not run"}
    out = {k: statistics.median(r[k] for r in results) for k in results[0]}
    out["all"] = [r["s_per_step"] for r in results]
    return out


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default=None, help=f"comma-separated, of {list(CONFIGS)}")
    parser.add_argument("--warmup", type=int, default=None, help="steps (multiple of 10)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (multiple of 10)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="alternating repeats of bare loops and harness runs (default: "
                             "1 on CUDA, 3 on a CPU, which is usually shared)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads here and OMP_NUM_THREADS for the harness runs "
                             "(default on CPU: 1; a shared CPU makes more threads spin)")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled mode")
    parser.add_argument("--baseline", default=None, metavar="SRC",
                        help="also time `harness run` from another source tree SRC (a checkout "
                             "with a harness_plugins -> plugins link), e.g. the code before a "
                             "change, in the same run")
    parser.add_argument("--write", action="store_true", help="write the results (--results)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder --write writes into (default: benchmarks/results)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is None and device.type == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    names = args.configs.split(",") if args.configs else DEFAULTS[device.type]
    args.repeats = args.repeats or (1 if device.type == "cuda" else 3)
    # the bare loops run under the malloc settings `harness run` gives itself at start-up
    malloc = tune_malloc()
    warmup = args.warmup or (100 if device.type == "cuda" else 50)
    steps = args.steps or (1000 if device.type == "cuda" else 500)
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in names:
            case = CONFIGS[name]
            sets = data_sets(name, scratch)
            model, images = our_model_and_images(name, sets, device)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            bare: list[float] = []
            model_bare: list[float] = []

            def time_bare(model=model, images=images, state=state, bare=bare,
                          model_bare=model_bare, case=case) -> None:
                model.load_state_dict(state)
                model_bare.append(bare_loop(model, images, case["batch"], device, warmup,
                                            steps, True))
                if case["model"] == "ae" and "model.arch=mlp" in case["sets"]:
                    hidden = int(next(s for s in case["sets"] if "hidden" in s).split("=")[1])
                    k = int(next(s for s in case["sets"] if ".k=" in s).split("=")[1])
                    torch.manual_seed(0)
                    ref = ReferenceAE(int(np.prod(images.shape[1:])), hidden, k)
                    bare.append(bare_loop(ref, images, case["batch"], device, warmup, steps,
                                          False))

            # alternate: bare, harness (and baseline), ..., bare; the compiled mode once
            runs: dict[str, list[dict]] = {"harness": [], "compiled": [], "baseline": []}
            for r in range(args.repeats):
                time_bare()
                runs["harness"].append(harness_run(name, sets, device, warmup, steps, [],
                                                   scratch, None))
                if args.baseline:
                    runs["baseline"].append(harness_run(name, sets, device, warmup, steps, [],
                                                        scratch, args.baseline))
                if r == 0 and not args.no_compiled:
                    runs["compiled"].append(harness_run(name, sets, device, warmup, steps,
                                                        ["train.compile=true"], scratch, None))
            time_bare()
            if args.no_compiled:
                runs["compiled"].append({"error": "skipped (--no-compiled)"})
            harness, compiled = combine(runs["harness"]), combine(runs["compiled"])
            baseline = combine(runs["baseline"]) if args.baseline else None
            ref = statistics.median(model_bare)
            row = {
                "config": name,
                "model": case["model"],
                "dataset": case["dataset"],
                "data": data_source(sets, case["dataset"]),
                "settings": case["sets"],
                "batch": case["batch"],
                "warmup_steps": warmup,
                "steps_timed": steps,
                "bare_ms": round(1e3 * statistics.median(bare), 3) if bare else None,
                "model_bare_ms": round(1e3 * ref, 3),
                "model_bare_ms_all": [round(1e3 * t, 3) for t in model_bare],
                "bare_ms_all": [round(1e3 * t, 3) for t in bare],
            }
            if baseline is not None:
                row["baseline_src"] = args.baseline
            for key, res in (("harness", harness), ("compiled", compiled),
                             ("baseline", baseline)):
                if res is None:
                    continue
                if "error" in res:
                    row[f"{key}_error"] = res["error"]
                    continue
                row[f"{key}_ms"] = round(1e3 * res["s_per_step"], 3)
                row[f"{key}_ms_all"] = [round(1e3 * t, 3) for t in res["all"]]
                row[f"{key}_vs_model_bare"] = round(res["s_per_step"] / ref, 3)
                if bare:
                    row[f"{key}_vs_bare"] = round(res["s_per_step"] / statistics.median(bare), 3)
                row[f"{key}_data_wait"] = round(res["data_wait"], 4)
                row[f"{key}_process_wall_s"] = round(res["process_wall_s"], 1)
                row.update({f"{key}_{k}": v for k, v in res.items() if k.startswith("peak_")})
            rows.append(row)
            print(summary(row), flush=True)
    doc = {"command": "python " + " ".join(["benchmarks/bench_gpu.py", *sys.argv[1:]]),
           "device": device_name(device), "machine": {**machine(), "malloc": malloc},
           "load_average_at_start": load, "results": rows}
    print(json.dumps(doc, indent=1))
    if args.write:
        write_results(args.results / f"bench_gpu_{device.type}", doc, markdown(doc))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def _cell(row: dict, key: str) -> str:
    if f"{key}_ms" not in row:
        return f"n/a ({row.get(f'{key}_error', '-')})"
    text = f"{row[f'{key}_ms']:.2f} ms ({row[f'{key}_vs_model_bare']:.2f}x"
    if f"{key}_vs_bare" in row:
        text += f"; {row[f'{key}_vs_bare']:.2f}x bare"
    return text + f"; data_wait {row[f'{key}_data_wait']:.2f})"


def summary(row: dict) -> str:
    bare = f"{row['bare_ms']:.2f} ms" if row["bare_ms"] is not None else "-"
    text = (f"{row['config']} (B={row['batch']}): bare {bare} | our model, bare loop "
            f"{row['model_bare_ms']:.2f} ms | harness run {_cell(row, 'harness')} | compiled "
            f"{_cell(row, 'compiled')}")
    if "baseline_src" in row:
        text += f" | harness run from {row['baseline_src']} {_cell(row, 'baseline')}"
    return text


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        f"# Time per training step on {doc['device']}: bare loops vs `harness run`",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; "
        f"device {doc['device']}; Python {m['python']}, torch {m['torch']}; {m['platform']}. "
        f"Load average at the start: {doc['load_average_at_start']:.1f}. malloc (bare loops): "
        f"{m['malloc']}.",
        "",
        "Wall ms per step over the timed steps after the warm-up. Ratios in brackets are "
        "against our model in the bare loop (and against the hand-written bare model where "
        "there is one); `data_wait` is the harness log's share of time spent waiting for "
        "batches. See the script's docstring for what each column runs.",
        "",
        "| config | batch | data | bare loop | our model, bare loop | `harness run` defaults | "
        "`harness run`, `train.compile=true` |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        bare = f"{r['bare_ms']:.2f} ms" if r["bare_ms"] is not None else "-"
        lines.append(f"| {r['config']} ({', '.join(r['settings'])}) | {r['batch']} | "
                     f"{r['data']} | {bare} | {r['model_bare_ms']:.2f} ms | "
                     f"{_cell(r, 'harness')} | {_cell(r, 'compiled')} |")
    for r in doc["results"]:
        if "baseline_src" in r:
            lines += ["", f"Same run, `harness run` defaults from `{r['baseline_src']}` (the "
                      f"code before this change): {r['config']}: {_cell(r, 'baseline')}."]
    lines += ["", "Every repeat (ms/step), for the spread:", ""]
    for r in doc["results"]:
        lines.append(f"- {r['config']}: bare {r['bare_ms_all']}; our model, bare loop "
                     f"{r['model_bare_ms_all']}; harness run {r.get('harness_ms_all', '-')}"
                     + (f"; baseline {r.get('baseline_ms_all', '-')}"
                        if "baseline_src" in r else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
