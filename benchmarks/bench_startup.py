"""Time to the first training step of `harness run`, phase by phase, with warm caches.

    python benchmarks/bench_startup.py [--device cpu|cuda] [--repeats 3] [--write]

Each repeat is a fresh Python process doing what ``harness run`` does, in order, timing each
phase: importing torch; the harness and the plugin host (config resolution); Accelerate's
process state; loading the data (decoded arrays from the cache: a first, untimed run fills
it); building the model; the Accelerator; then :func:`harness.training.loop.train` until its first
step is logged (optimizer, loader, the step itself; the optimizer's imports are timed
before it as their own phase). Also timed as a subprocess: ``harness --help`` (torch-free).

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
RUN = ["--model", "vrrae", "--dataset", "fashion-mnist", "--seed", "0",
       "--set", "train.batch_size=576", "--set", "model.latent_dim=100", "--set", "model.k=16"]


def child(device: str) -> None:
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
    from harness import commands as runner
    from harness.host.plugins import get_host

    host = get_host()
    sets = [RUN[i + 1] for i in range(len(RUN)) if RUN[i] == "--set"]
    sets += [x for x in os.environ.get("BENCH_STARTUP_SETS", "").split("\n") if x]
    config = runner.resolve_config(model="vrrae", dataset="fashion-mnist", config_file=None,
                                   sets=[*sets, "train.steps=2", "train.log_every=1"], seed=0,
                                   host=host)
    mark("harness + plugin host + config")
    from accelerate import PartialState

    from harness.training import loop as trainer

    PartialState(cpu=trainer.cpu_launch())
    mark("accelerate + process state")
    splits = runner.load_data(host, config)
    mark("data (cached arrays)")
    trainer.seed_everything(config.seed)
    model = runner.build_model(host, config, splits.info)
    mark("model build")
    accelerator = trainer.make_accelerator(config.train, None)
    if device == "cuda":
        torch.zeros(1, device="cuda")
    mark("accelerator (+ CUDA init)")
    import pytorch_optimizer  # noqa: F401 - what build_optimizer imports first
    import torch._dynamo  # noqa: F401 - what torch.optim.Optimizer() imports on first use

    mark("optimizer imports (pytorch_optimizer, torch._dynamo)")
    logged: list[float] = []

    def on_log(record: dict) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        logged.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        trainer.train(model, splits, config, tmp, accelerator=accelerator, on_log=on_log)
    marks["train() to the first step"] = logged[0] - last
    marks["total to the first step"] = logged[0] - T0
    marks["(one steady step, for scale)"] = logged[1] - logged[0]
    print(json.dumps(marks))


def end_to_end(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS on CPU (a shared CPU makes more threads spin)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.device)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from _machine import machine
    from bench_gpu import data_sets

    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        extra = data_sets("mnist-vrrae-conv", Path(tmp))  # generated IDX when not installed
        if extra:
            RUN.extend(["--set", extra[0]])
            env["BENCH_STARTUP_SETS"] = extra[0]
        me = [sys.executable, __file__, "--child", "--device", device]
        subprocess.run(me, env=env, check=True, capture_output=True)  # fill the data cache
        phases: list[dict[str, float]] = []
        help_s: list[float] = []
        for _ in range(args.repeats):
            env["BENCH_T_LAUNCH"] = repr(time.perf_counter())
            out = subprocess.run(me, env=env, check=True, capture_output=True, text=True).stdout
            phases.append(json.loads(out.strip().splitlines()[-1]))
            help_s.append(end_to_end([sys.executable, "-m", "harness.cli", "--help"], env))
    median = {k: round(statistics.median(p[k] for p in phases), 3) for k in phases[0]}
    doc = {"command": "python " + " ".join(["benchmarks/bench_startup.py", *sys.argv[1:]]),
           "device": device, "machine": machine(), "load_average_at_start": os.getloadavg()[0],
           "phases_median_s": median, "phases_all": phases,
           "harness_help_s": round(statistics.median(help_s), 3),
           "threads": env.get("OMP_NUM_THREADS"), "run": " ".join(RUN)}
    for k, v in median.items():
        print(f"{k:52s} {v:7.2f} s")
    print(f"{'harness --help':52s} {doc['harness_help_s']:7.2f} s")
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"startup_{device}.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
