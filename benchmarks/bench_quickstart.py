"""The quick start against its own training compute, in the same run.

    python benchmarks/bench_quickstart.py [--steps 1000] [--repeats 1] [--baseline-python PY] [--write]

Times, alternating, ``--repeats`` times:

* **quick start**: ``harness run --model vrrae --out TMP`` as a new user runs it (the bumps,
  1000 steps at batch 64, every default protocol, the image grids), a fresh process, wall
  time from launch to exit and its CPU time; its metrics.json gives the training loop's time,
  where the evaluation's time went and the numbers (the README's: test reconstruction error
  6.06 %, Gaussian-fit error 3.69 ± 0.95 %, on the machine they were measured on);
* **bare training**: the same model (same preset, seed and data) trained for the same steps
  by a plain PyTorch loop (``bench_overhead.bare_loop``: DataLoader, loss, backward,
  AdaBelief), timed over the loop alone after 10 untimed steps: the compute no quick start
  can avoid.

The figure that matters is the ratio quick start / bare training (everything that is not
training: start-up, checkpoints, calibration, evaluation, pictures). ``--steps`` shortens
both (``train.steps``) on a loaded machine; ``--baseline-python`` also times the quick
start with another interpreter (e.g. a virtual environment with the code before a change).
Threads: torch's default (every core), as ``harness run`` uses, unless OMP_NUM_THREADS is set.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).parent / "results"
#: untimed steps before the bare loop's clock starts (first-use costs are the quick start's)
WARMUP = 10
NUMBERS = ("reconstruction/rec_error_percent", "random-generation/gaussian_fit_error_percent",
           "random-generation/gaussian_fit_error_percent_std")


def bare_child(steps: int) -> None:
    """The quick start's model and data, trained by the bare loop; prints one JSON line."""
    from bench_overhead import bare_loop

    from harness.host.plugins import get_host
    from harness.run.build import build_model, load_data, resolve_config
    from harness.training.loop import seed_everything

    host = get_host()
    config = resolve_config(model="vrrae", dataset="bumps", config_file=None,
                                   sets=[f"train.steps={steps}"], seed=0, host=host)
    splits = load_data(host, config)
    seed_everything(config.seed)
    model = build_model(host, config, splits.info)
    timing = bare_loop(model, splits, config.train.batch_size, WARMUP, steps)
    print(json.dumps({"wall_s": timing["wall_ms"] * steps / 1e3,
                      "cpu_s": timing["cpu_ms"] * steps / 1e3}))


def quickstart(python: str, steps: int, env: dict[str, str]) -> dict:
    """``harness run --model vrrae`` in a fresh process: wall, CPU, and its metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quickstart"
        cmd = [python, "-m", "harness.cli", "run", "--model", "vrrae", "--out", str(out)]
        if steps != 1000:
            cmd += ["--set", f"train.steps={steps}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        doc = json.loads((out / "metrics.json").read_text())
    values = {f"{r['protocol']}/{r['metric']}": r["value"] for r in doc["results"]}
    evaluation = doc.get("evaluation_seconds") or {}
    return {"wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "training_loop_s": doc["training"]["wall_time"],
            "calibration_s": doc["training"].get("calibration_time"),
            "evaluation_s": sum(v for parts in evaluation.values() for v in parts.values()),
            "evaluation_seconds": evaluation,
            "numbers": {k: values.get(k) for k in NUMBERS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bare-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline-python", metavar="PY", default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.bare_child is not None:
        bare_child(args.bare_child)
        return
    from _machine import command_line, machine, write_results

    load = os.getloadavg()[0]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    trees = {"this tree": sys.executable}
    if args.baseline_python:
        trees["baseline"] = args.baseline_python
    runs: dict[str, list[dict]] = {"bare training": [], **{t: [] for t in trees}}
    for _ in range(args.repeats):
        proc = subprocess.run([sys.executable, __file__, "--bare-child", str(args.steps)],
                              env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        runs["bare training"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        for tree, python in trees.items():
            runs[tree].append(quickstart(python, args.steps, env))
    bare = {k: statistics.median(r[k] for r in runs["bare training"]) for k in ("wall_s", "cpu_s")}
    rows = []
    for tree in trees:
        med = {k: statistics.median(r[k] for r in runs[tree])
               for k in ("wall_s", "cpu_s", "training_loop_s", "evaluation_s")}
        rows.append({"tree": tree, "python": trees[tree], "median": med,
                     "quick start / bare training (wall)": round(med["wall_s"] / bare["wall_s"], 3),
                     "quick start / bare training (cpu)": round(med["cpu_s"] / bare["cpu_s"], 3),
                     "numbers": runs[tree][0]["numbers"]})
    doc = {"command": "python " + " ".join(["benchmarks/bench_quickstart.py", *sys.argv[1:]]),
           "machine": machine(), "load_average_at_start": load,
           "load_average_at_end": os.getloadavg()[0], "steps": args.steps,
           "bare_training_median": bare, "quick_start": rows, "runs": runs}
    lines = ["# The quick start against its own training compute\n",
             command_line(doc, f"{args.steps} steps", f"medians of {args.repeats}"),
             "| code | quick start wall s | training loop s | evaluation s | bare training "
             "wall s | quick start / bare (wall) | (cpu) | rec % | Gaussian fit % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, n = r["median"], r["numbers"]
        fit = n[NUMBERS[1]]
        lines.append(
            f"| {r['tree']} | {m['wall_s']:.1f} | {m['training_loop_s']:.1f} | "
            f"{m['evaluation_s']:.1f} | {bare['wall_s']:.1f} | "
            f"{r['quick start / bare training (wall)']:.2f}x | "
            f"{r['quick start / bare training (cpu)']:.2f}x | {n[NUMBERS[0]]:.2f} | "
            f"{fit:.2f} ± {n[NUMBERS[2]]:.2f} |" if fit is not None else f"| {r['tree']} | ? |")
    print("\n".join(lines))
    if args.write:
        name = "quickstart_ratio" + ("" if args.steps == 1000 else f"_{args.steps}steps")
        write_results(RESULTS / name, doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
