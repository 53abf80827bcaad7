"""Time to the first training step of `harness run`, phase by phase, against `import torch`.

    python benchmarks/bench_startup.py [--device cpu|cuda] [--repeats 3] [--baseline-python PY] [--write]

Each repeat is a fresh Python process doing what ``harness run`` does, in order, timing each
phase: importing torch; the harness and the plugin host (config resolution); Accelerate's
process state; loading the data (decoded arrays from the cache: a first, untimed run fills
it); building the model; the Accelerator; then :func:`harness.training.loop.train` until its first
step is logged (optimizer, loader, the step itself). Beside it, in the same repeat, the
reference: a fresh ``python -c "import torch"``, timed the same way (from its launch to the end
of the import); the figure that matters is the ratio of the two (goal: at most 1.5). Also
timed end to end as subprocesses: ``harness --help`` and ``harness models`` (torch-free;
goal: under 0.3 s), against ``python -c pass``. ``--baseline-python PY`` times the same
phases with another interpreter (e.g. a virtual environment holding the code before a
change), alternating with this one, so a before/after comparison shares the machine's load.

Wall time; the medians over repeats are reported with the load average, as the machine may
be shared.
"""

from __future__ import annotations

import os
import time

# when the parent launched this process (perf_counter is CLOCK_MONOTONIC on Linux, shared by
# processes), so "python start-up" includes the interpreter's own start
T0 = float(os.environ.get("BENCH_T_LAUNCH", time.perf_counter()))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).parent / "results"
#: the runs timed: the paper's Fashion-MNIST configuration (its CNN at batch 576, one step
#: about half a second of compute on one thread) and the quick start's (the bumps at batch 64)
CASES = {
    "fashion-mnist": ("vrrae", "fashion-mnist",
                      ["train.batch_size=576", "model.latent_dim=100", "model.k=16"]),
    "quickstart": ("vrrae", "bumps", []),
}


def child(device: str, case: str) -> None:
    """One cold process: the phases of ``harness run`` up to the first step, timed."""
    marks: dict[str, float] = {"python start-up": time.perf_counter() - T0}
    last = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        marks[name] = now - last
        last = now

    try:
        from harness.training.resources import tune_malloc

        tune_malloc()
    except ImportError:  # a baseline tree from before harness.training.resources
        pass
    import torch

    mark("import torch")
    from harness.host.plugins import get_host
    from harness.run.build import build_model, load_data, resolve_config

    host = get_host()
    model_name, dataset, sets = CASES[case]
    if dataset == "fashion-mnist":
        sets = [*sets, *[x for x in os.environ.get("BENCH_STARTUP_SETS", "").split("\n") if x]]
    config = resolve_config(model=model_name, dataset=dataset, config_file=None,
                                   sets=[*sets, "train.steps=2", "train.log_every=1"], seed=0,
                                   host=host)
    mark("harness + plugin host + config")
    from accelerate import PartialState

    from harness.training import loop as trainer

    PartialState(cpu=trainer.cpu_launch())
    mark("accelerate + process state")
    splits = load_data(host, config)
    mark("data (cached arrays)")
    trainer.seed_everything(config.seed)
    model = build_model(host, config, splits.info)
    mark("model build")
    accelerator = trainer.make_accelerator(config.train, None)
    if device == "cuda":
        torch.zeros(1, device="cuda")
    mark("accelerator (+ CUDA init)")
    logged: list[float] = []
    forward: list[float] = []

    def on_log(record: dict) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        logged.append(time.perf_counter())

    model.register_forward_pre_hook(lambda *_: forward.append(time.perf_counter()))
    with tempfile.TemporaryDirectory() as tmp:
        trainer.train(model, splits, config, tmp, accelerator=accelerator, on_log=on_log)
    marks["train() to the first step's forward"] = forward[0] - last
    marks["the first step (forward to logged)"] = logged[0] - forward[0]
    marks["total to the first step's forward"] = forward[0] - T0
    marks["total to the first step"] = logged[0] - T0
    marks["(one steady step, for scale)"] = logged[1] - logged[0]
    marks["modules imported by then"] = sorted(  # type: ignore[assignment]
        m for m in HEAVY_MODULES if m in sys.modules)
    print(json.dumps(marks))


#: modules whose import costs a sizeable part of an ``import torch``: a run that does not need
#: them should not import them before its first step
HEAVY_MODULES = ("torch._dynamo", "sympy", "torch.distributed.tensor", "pytorch_optimizer",
                 "sklearn", "scipy", "torchvision", "matplotlib", "datasets", "torchmetrics")

#: the reference: a fresh interpreter importing torch, timed from its launch like the child
IMPORT_TORCH = ("import os, time; t0 = float(os.environ['BENCH_T_LAUNCH']); import torch; "
                "print(time.perf_counter() - t0)")


def end_to_end(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def launched(cmd: list[str], env: dict[str, str]) -> str:
    """Run ``cmd`` with its launch time in ``BENCH_T_LAUNCH``; its last line of output."""
    env = {**env, "BENCH_T_LAUNCH": repr(time.perf_counter())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None)
    parser.add_argument("--case", default=",".join(CASES),
                        help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS on CPU (a shared CPU makes more threads spin)")
    parser.add_argument("--baseline-python", metavar="PY", default=None,
                        help="also time the harness installed for this interpreter")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.device, args.case)
        return
    load = os.getloadavg()[0]
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from _machine import machine, write_results
    from bench_gpu import data_sets

    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", str(args.threads))
    trees = {"this tree": sys.executable}
    if args.baseline_python:
        trees["baseline"] = args.baseline_python
    cases = args.case.split(",")
    runs = [(case, tree) for case in cases for tree in trees]
    phases: dict[tuple[str, str], list[dict]] = {run: [] for run in runs}
    times: dict[str, list[float]] = {"import torch": [], "python -c pass": [],
                                     "harness --help": [], "harness models": []}
    with tempfile.TemporaryDirectory() as tmp:
        extra = data_sets("mnist-vrrae-conv", Path(tmp))  # generated IDX when not installed
        env["BENCH_STARTUP_SETS"] = "\n".join(extra)

        def child_cmd(case: str, tree: str) -> list[str]:
            return [trees[tree], __file__, "--child", "--device", device, "--case", case]

        for run in runs:  # fill the data cache, warm the file cache
            subprocess.run(child_cmd(*run), env=env, check=True, capture_output=True)
        for _ in range(args.repeats):
            times["import torch"].append(float(launched([sys.executable, "-c", IMPORT_TORCH], env)))
            for run in runs:
                phases[run].append(json.loads(launched(child_cmd(*run), env)))
            times["python -c pass"].append(end_to_end([sys.executable, "-c", "pass"], env))
            for command in ("--help", "models"):
                times[f"harness {command}"].append(
                    end_to_end([sys.executable, "-m", "harness.cli", command], env))
    reference = {k: median(v) for k, v in times.items()}
    results = []
    for (case, tree), repeats in phases.items():
        numeric = [k for k, v in repeats[0].items() if isinstance(v, float)]
        ratios = {f"{total} / import torch": {
            "of the medians": round(median([p[total] for p in repeats]) / reference["import torch"], 2),
            "median of the paired ratios": round(statistics.median(
                p[total] / t for p, t in zip(repeats, times["import torch"], strict=True)), 2)}
            for total in ("total to the first step", "total to the first step's forward")}
        results.append({"case": case, "tree": tree, "python": trees[tree],
                        "run": " ".join([f"--model {CASES[case][0]} --dataset {CASES[case][1]}",
                                         *[f"--set {x}" for x in CASES[case][2]]]),
                        "phases_median_s": {k: median([p[k] for p in repeats]) for k in numeric},
                        "ratios": ratios,
                        "heavy_modules_imported_before_the_first_step":
                            repeats[0]["modules imported by then"],
                        "phases_all": repeats})
    commands = {f"{c} / python -c pass": round(reference[c] / reference["python -c pass"], 2)
                for c in ("harness --help", "harness models")}
    doc = {"command": "python " + " ".join(["benchmarks/bench_startup.py", *sys.argv[1:]]),
           "device": device, "machine": machine(), "load_average_at_start": load,
           "load_average_at_end": os.getloadavg()[0], "threads": env.get("OMP_NUM_THREADS"),
           "reference_median_s": reference, "commands_vs_python": commands,
           "runs": results, "reference_all_s": times}
    for r in results:
        print(f"--- {r['case']}, {r['tree']} ({r['python']}): {r['run']}")
        for k, v in r["phases_median_s"].items():
            print(f"  {k:50s} {v:7.2f} s")
        print(f"  {'heavy modules imported before the first step':50s} "
              f"{', '.join(r['heavy_modules_imported_before_the_first_step']) or 'none'}")
        for k, v in r["ratios"].items():
            print(f"  {k:50s} {v['of the medians']:5.2f}x "
                  f"(paired: {v['median of the paired ratios']:.2f}x)")
    print(f"--- references, same run (load average {load:.1f} at the start)")
    for k, v in reference.items():
        print(f"  {k:50s} {v:7.2f} s")
    for k, v in commands.items():
        print(f"  {k:50s} {v:5.2f}x")
    if args.write:
        write_results(RESULTS / f"startup_{device}", doc)


if __name__ == "__main__":
    main()
