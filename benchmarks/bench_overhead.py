"""Harness training-loop overhead against a bare PyTorch loop on the same model, data, batch.

    python benchmarks/bench_overhead.py [--quick] [--malloc harness|glibc|env] [--write]
    python benchmarks/bench_overhead.py --quickstart [--baseline SRC] [--set K=V] [--write]

(The second form times the CPU quick start, `harness run --model vrrae` with defaults, as a
subprocess: wall, CPU, minor page faults, peak RSS; see :func:`quickstart`.)

For each case the same model (same seed, same initial weights), the same dataset object and
the same global batch are trained twice, alternating, ``--repeats`` times:

* **bare**: a plain loop written here: ``DataLoader(shuffle=True, drop_last=True)``, the
  model's loss, ``zero_grad`` / ``backward`` / ``step`` with the same AdaBelief settings;
  nothing else (no logging, no checks).
* **harness**: :func:`harness.training.loop.train` with its defaults (log every 10 steps, NaN check
  every step, progress and JSON-lines log, sharded sampler, Accelerate's backward/step).

Both are timed over the same steady-state window (steps ``warmup+1 .. warmup+steps``; the
harness's from its own log records' ``time`` field, which are taken after the step's
logging). Reported: median ms/step of each, the overhead ``harness/bare - 1`` from the
medians (and, paired, the median over repeats of each repeat's own ratio, which load that
drifts over minutes on a shared machine does not bias), the share of loop time each spends waiting for data, and the harness's fixed
per-run costs outside the loop (set-up, final checkpoint, calibration), which a bare loop
does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from harness.api import DataConfig, DatasetInfo, DataSplits, StepContext
from harness.configuration.run_config import RunConfig, TrainConfig
from harness.training.loop import make_accelerator, seed_everything, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, write_results  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def digits_splits() -> DataSplits:
    from harness_plugins.datasets import digits

    return digits.load(DataConfig())


def mnist_like_splits(n: int = 2048) -> DataSplits:
    """Random uint8 images in MNIST's shape, in the datasets plugin's ArrayDataset (the real
    per-item path: uint8 -> float32 / 255 per image)."""
    from harness_plugins.datasets._common import ArrayDataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
    info = DatasetInfo(name="mnist-like", shape=(1, 28, 28), source="generated")
    return DataSplits(info=info, train=ArrayDataset(images), test=ArrayDataset(images[:64]))


CASES = {
    # a model that does almost nothing: the difference is the loop's own cost per step
    "digits-ae-tiny": dict(data=digits_splits, model=dict(k=2, arch="mlp", hidden=8),
                           batch=64, cls="AE"),
    # small and fast: the worst case for a loop's relative overhead
    "digits-vrrae-mlp": dict(data=digits_splits, model=dict(k=8, latent_dim=64, arch="mlp",
                                                            hidden=256), batch=64),
    # the paper's convolutional architecture on MNIST-shaped images (k, L as for MNIST)
    "mnist28-vrrae-conv": dict(data=mnist_like_splits, model=dict(k=16, latent_dim=100,
                                                                  arch="conv"), batch=64),
}


def build(case: dict, splits: DataSplits) -> torch.nn.Module:
    from harness_plugins.autoencoders import models

    cls = getattr(models, case.get("cls", "VRRAE"))
    seed_everything(0)
    options = dict(case["model"])
    if cls.variational:
        options["beta"] = 1e-3
    return cls.from_config(cls.Config(**options), splits.info)


class _Clock:
    """Wall and process CPU time at the start and end of the timed window. CPU time is the
    headline: with one torch thread it measures the work done and is little disturbed by
    other programs sharing the machine (wall time is reported too)."""

    def __init__(self) -> None:
        self.wall0 = self.cpu0 = self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def bare_loop(model: torch.nn.Module, splits: DataSplits, batch: int, warmup: int,
              steps: int) -> dict[str, float]:
    from harness.training.optim import AdaBelief

    opt = AdaBelief(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-16,
                    weight_decay=0.0)
    loader = DataLoader(splits.train, batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    model.train()
    it = iter(loader)
    wait = 0.0
    clock = _Clock()
    for step in range(warmup + steps):
        if step == warmup:
            wait = 0.0
            clock.start()
        t0 = time.perf_counter()
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, _ = next(it)
        wait += time.perf_counter() - t0
        losses = model(x, StepContext(step=step, seed=0))
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
    clock.stop()
    return {"wall_ms": 1e3 * clock.wall / steps, "cpu_ms": 1e3 * clock.cpu / steps,
            "data_wait": wait / clock.wall}


def harness_loop(model: torch.nn.Module, splits: DataSplits, batch: int, warmup: int,
                 steps: int, accelerator) -> dict[str, float]:
    config = RunConfig(model="vrrae", dataset=splits.info.name, seed=0,
                       train=TrainConfig(steps=warmup + steps, batch_size=batch))
    clock = _Clock()
    window: list[dict] = []

    def on_log(record: dict) -> None:  # called right after the step's own logging
        if record["step"] == warmup:
            clock.start()
        elif record["step"] > warmup:
            window.append(record)
            if record["step"] == warmup + steps:
                clock.stop()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(model, splits, config, tmp, accelerator=accelerator, on_log=on_log)
        total = time.perf_counter() - t0
    log_every = config.train.log_every
    wait = sum(r["data_wait"] * log_every * batch / r["samples_per_s"] for r in window)
    return {
        "wall_ms": 1e3 * clock.wall / steps,
        "cpu_ms": 1e3 * clock.cpu / steps,
        "data_wait": wait / clock.wall,
        "fixed_s": total - result.wall_time,  # set-up + final checkpoint + calibration
        "calibration_s": result.calibration_time,
    }


def machine_with_malloc(malloc: str) -> dict[str, str | int]:
    import accelerate

    return {**machine(), "accelerate": accelerate.__version__, "malloc": malloc}


#: the glibc malloc settings of ``--malloc env`` (what harness.training.resources.tune_malloc sets
#: in-process, given as environment variables)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
MALLOC_MODES = ("harness", "glibc", "env")


def prepare_malloc(mode: str, argv: list[str]) -> str:
    """Put the process under the malloc settings of ``mode``; returns them in words.

    * ``harness`` (default): what a user gets: no environment variables, and
      :func:`harness.training.resources.tune_malloc` in-process, as `harness run` calls it at start-up.
    * ``glibc``: glibc's adaptive defaults, untouched.
    * ``env``: re-execute under ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``.

    Why it matters: with glibc's adaptive defaults, multi-megabyte activations are returned to
    the OS and page-faulted back in on some steps and not others depending on what else the
    process happened to allocate: we measured ~2 000 extra minor faults per step (about +4 ms
    on the conv case) in whichever loop was unlucky, which swamps the few microseconds the
    loop itself costs.
    """
    if mode == "env":
        if not all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
            os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **MALLOC_ENV})
        return "env " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
    if mode == "glibc":
        return "glibc defaults (untouched)"
    from harness.training.resources import tune_malloc

    return "harness in-process: " + tune_malloc()


# ------------------------------------------------------------------------------ quick start
def run_measured(cmd: list[str], env: dict[str, str], cwd: str | None = None
                 ) -> dict[str, float]:
    """Wall, CPU (user, system) seconds, minor page faults and peak RSS of ``cmd`` and its
    children: from ``/usr/bin/time -v`` when present, else ``getrusage(RUSAGE_CHILDREN)``."""
    import resource
    import shutil
    import subprocess

    gnu_time = shutil.which("time", path="/usr/bin")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([gnu_time, "-v", *cmd] if gnu_time else cmd, env=env, cwd=cwd,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
           "system_s": after.ru_stime - before.ru_stime,
           "minor_faults": after.ru_minflt - before.ru_minflt,
           "max_rss_mb": after.ru_maxrss / 1024, "source": "getrusage"}
    if gnu_time:
        fields = {"Elapsed (wall clock) time": "wall_clock",
                  "User time (seconds)": "user_s", "System time (seconds)": "system_s",
                  "Minor (reclaiming a frame) page faults": "minor_faults",
                  "Maximum resident set size (kbytes)": "max_rss_kb"}
        for line in proc.stderr.splitlines():
            key, _, value = line.strip().rpartition(": ")
            if key in fields and fields[key] != "wall_clock":
                out[fields[key]] = float(value)
        out["max_rss_mb"] = out.pop("max_rss_kb", out["max_rss_mb"] * 1024) / 1024
        out["source"] = "/usr/bin/time -v"
    return out


def quickstart(args: argparse.Namespace) -> None:
    """Time the CPU quick start (`harness run --model vrrae`, defaults) from this tree and,
    with ``--baseline SRC``, from another source tree, alternating, in one run."""
    sets = [x for item in args.set for x in ("--set", item)]
    trees = [("this tree", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    rows: list[dict] = []
    for repeat in range(args.repeats or 1):
        for label, src in (trees if repeat % 2 == 0 else trees[::-1]):
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            if src:
                env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "harness.cli", "run", "--model", "vrrae",
                       "--out", str(Path(tmp) / "qs"), *sets]
                # `python -m` puts the working directory first on sys.path: run from the tree
                res = run_measured(cmd, env, cwd=src or str(Path(__file__).resolve().parents[1]))
            res.update(tree=label, src=src or ".", repeat=repeat)
            rows.append(res)
            print(f"{label}: wall {res['wall_s']:.1f} s, CPU {res['user_s']:.1f} s user + "
                  f"{res['system_s']:.1f} s system, {res['minor_faults'] / 1e6:.2f} M minor "
                  f"faults, peak RSS {res['max_rss_mb']:.0f} MB", flush=True)
    doc = {"command": "python " + " ".join(["benchmarks/bench_overhead.py", *sys.argv[1:]]),
           "machine": machine_with_malloc("default (no MALLOC_* variables)"),
           "load_average_at_start": os.getloadavg()[0], "runs": rows}
    print(json.dumps(doc, indent=1))
    if args.write:
        write_results(RESULTS / "quickstart", doc, quickstart_markdown(doc))


def quickstart_markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# CPU quick start: `harness run --model vrrae`, wall, CPU and page faults",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}; "
        f"{m['platform']}. Load average at the start: {doc['load_average_at_start']:.1f} (a "
        "shared machine: wall time is inflated by other jobs, CPU time and faults much less).",
        "",
        "No `MALLOC_*` variables: `this tree` sets glibc's thresholds in-process "
        "(`harness.training.resources.tune_malloc`); `baseline` is the code before that change.",
        "",
        "| tree | repeat | wall s | user CPU s | system CPU s | minor page faults | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        lines.append(f"| {r['tree']} ({r['src']}) | {r['repeat']} | {r['wall_s']:.1f} | "
                     f"{r['user_s']:.1f} | {r['system_s']:.1f} | {r['minor_faults']:,.0f} | "
                     f"{r['max_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite results/overhead.md from results/overhead.json")
    parser.add_argument("--malloc", choices=MALLOC_MODES, default="harness",
                        help="malloc settings (see prepare_malloc); default: as `harness run`")
    parser.add_argument("--quickstart", action="store_true",
                        help="time the CPU quick start instead (see quickstart)")
    parser.add_argument("--baseline", metavar="SRC", default=None,
                        help="--quickstart: also run from this source tree")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="--quickstart: passed to harness run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: CPU time then measures work, see _Clock)")
    args = parser.parse_args()
    if args.quickstart:
        quickstart(args)
        return
    malloc = prepare_malloc(args.malloc, sys.argv)
    torch.set_num_threads(args.threads)
    if args.markdown_only:
        doc = json.loads((RESULTS / "overhead.json").read_text())
        (RESULTS / "overhead.md").write_text(markdown(doc))
        return
    repeats = args.repeats or (2 if args.quick else 7)
    accelerator = make_accelerator(TrainConfig())
    rows = []
    for name in args.cases.split(","):
        case = CASES[name]
        splits = case["data"]()
        steps = {"digits-ae-tiny": 1500, "digits-vrrae-mlp": 300, "mnist28-vrrae-conv": 40}[name]
        warmup = 10 if name.endswith("conv") else 20
        if args.quick:
            steps //= 4 if steps > 100 else 2
            steps -= steps % 10
        bare, harn = [], []
        for r in range(repeats):
            order = ("bare", "harness") if r % 2 == 0 else ("harness", "bare")
            for which in order:
                model = build(case, splits)
                if which == "bare":
                    bare.append(bare_loop(model, splits, case["batch"], warmup, steps))
                else:
                    harn.append(harness_loop(model, splits, case["batch"], warmup, steps,
                                             accelerator))
        def med(runs: list[dict], key: str) -> float:
            return statistics.median(x[key] for x in runs)

        bc, hc = med(bare, "cpu_ms"), med(harn, "cpu_ms")
        bw, hw = med(bare, "wall_ms"), med(harn, "wall_ms")
        row = {
            "case": name,
            "batch": case["batch"],
            "warmup_steps": warmup,
            "steps_timed": steps,
            "repeats": repeats,
            "bare_cpu_ms_per_step": round(bc, 3),
            "harness_cpu_ms_per_step": round(hc, 3),
            "overhead_cpu": round(hc / bc - 1, 4),
            "bare_wall_ms_per_step": round(bw, 3),
            "harness_wall_ms_per_step": round(hw, 3),
            "overhead_wall": round(hw / bw - 1, 4),
            # best-of-repeats: the least disturbed run of each, a second view of the same data
            "overhead_cpu_min": round(min(x["cpu_ms"] for x in harn)
                                      / min(x["cpu_ms"] for x in bare) - 1, 4),
            # paired: the median of each repeat's harness/bare ratio; the two loops of one
            # repeat run back to back, so load that drifts over minutes cancels out
            "overhead_cpu_paired": round(statistics.median(
                h["cpu_ms"] / b["cpu_ms"] for h, b in zip(harn, bare, strict=True)) - 1, 4),
            "bare_cpu_ms_all": [round(x["cpu_ms"], 3) for x in bare],
            "harness_cpu_ms_all": [round(x["cpu_ms"], 3) for x in harn],
            "bare_wall_ms_all": [round(x["wall_ms"], 3) for x in bare],
            "harness_wall_ms_all": [round(x["wall_ms"], 3) for x in harn],
            "bare_data_wait": round(med(bare, "data_wait"), 4),
            "harness_data_wait": round(med(harn, "data_wait"), 4),
            "harness_fixed_s": round(med(harn, "fixed_s"), 3),
            "harness_calibration_s": round(med(harn, "calibration_s"), 3),
        }
        rows.append(row)
        print(f"{name}: CPU ms/step bare {bc:.3f} harness {hc:.3f} overhead "
              f"{100 * row['overhead_cpu']:+.2f}% (paired {100 * row['overhead_cpu_paired']:+.2f}%)"
              f" | wall ms/step bare {bw:.3f} harness {hw:.3f} "
              f"overhead {100 * row['overhead_wall']:+.2f}% | data wait bare "
              f"{100 * row['bare_data_wait']:.1f}% harness {100 * row['harness_data_wait']:.1f}%"
              f" | harness fixed cost per run {row['harness_fixed_s']:.2f} s (calibration "
              f"{row['harness_calibration_s']:.2f} s)", flush=True)
    doc = {"command": "python " + " ".join(["benchmarks/bench_overhead.py", *sys.argv[1:]]),
           "machine": machine_with_malloc(malloc), "results": rows}
    print(json.dumps(doc, indent=1))
    if args.write:
        write_results(RESULTS / "overhead", doc, markdown(doc))


def _paired(row: dict) -> str:
    """The paired overhead (rows written before it existed: recomputed from the repeats)."""
    value = row.get("overhead_cpu_paired")
    if value is None:
        value = statistics.median(h / b - 1 for h, b in zip(row["harness_cpu_ms_all"],
                                                            row["bare_cpu_ms_all"], strict=True))
    return f"{100 * value:+.1f}%"


def markdown(doc: dict) -> str:
    """The committed summary: the command, the machine, one row per case."""
    m = doc["machine"]
    lines = [
        "# Training-loop overhead: harness.training.loop vs a bare PyTorch loop",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; "
        f"Python {m['python']}, torch {m['torch']}, accelerate {m['accelerate']}; "
        f"{m['platform']}. malloc: {m['malloc']}.",
        "",
        "Same model (same initial weights), same dataset object, same batch, same AdaBelief; "
        "median over alternating repeats of the steady-state window (warm-up steps excluded). "
        "CPU time (process time, one torch thread) is the headline because the machine is "
        "shared with other jobs; wall time is shown too. Data wait: share of the loop's wall "
        "time spent getting the next batch (num_workers=0). malloc: by default as `harness "
        "run` sets it in-process (`--malloc harness`); with glibc's adaptive defaults "
        "(`--malloc glibc`) page faults on multi-megabyte activations came and went between "
        "runs (about +4 ms a step on the conv case, in whichever loop was unlucky).",
        "",
        "| case | batch | steps × repeats | bare CPU ms/step | harness CPU ms/step | "
        "overhead (CPU; best-of; paired) | bare wall ms/step | harness wall ms/step | overhead (wall) | "
        "data wait bare / harness | harness fixed cost per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['case']} | {r['batch']} | {r['steps_timed']} × {r['repeats']} | "
            f"{r['bare_cpu_ms_per_step']:.3f} | {r['harness_cpu_ms_per_step']:.3f} | "
            f"{100 * r['overhead_cpu']:+.1f}% ({100 * r['overhead_cpu_min']:+.1f}%; "
            f"{_paired(r)}) | "
            f"{r['bare_wall_ms_per_step']:.3f} | "
            f"{r['harness_wall_ms_per_step']:.3f} | {100 * r['overhead_wall']:+.1f}% | "
            f"{100 * r['bare_data_wait']:.1f}% / {100 * r['harness_data_wait']:.1f}% | "
            f"{r['harness_fixed_s']:.2f} s (calibration {r['harness_calibration_s']:.2f} s) |"
        )
    lines += ["", "Reading (goal of issue #4: loop overhead under 3% on CPU; data loading never "
              "the bottleneck):", ""]
    for r in doc["results"]:
        extra_us = 1e3 * (r["harness_cpu_ms_per_step"] - r["bare_cpu_ms_per_step"])
        verdict = "within" if r["overhead_cpu"] < 0.03 else "above"
        lines.append(
            f"- {r['case']}: {100 * r['overhead_cpu']:+.1f}% CPU ({extra_us:+.0f} µs a step), "
            f"{verdict} the 3% goal; waiting for data {100 * r['harness_data_wait']:.1f}% of "
            f"the harness loop's time (bare loop {100 * r['bare_data_wait']:.1f}%)."
        )
    lines += ["", "Every repeat (ms/step), for the spread:", ""]
    for r in doc["results"]:
        lines.append(f"- {r['case']}: CPU bare {r['bare_cpu_ms_all']}, harness "
                     f"{r['harness_cpu_ms_all']}; wall bare {r['bare_wall_ms_all']}, harness "
                     f"{r['harness_wall_ms_all']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
