"""KID's time against FID's on the same features, in the same process.

    python benchmarks/bench_kid.py [--repeats 3] [--threads 1] [--baseline-python PY] [--write]

Two feature sets, random non-negative rows (the timings do not depend on the values):
the Inception size (10 000 reference rows of dimension 2 048, 1 250 generated) and the
Fashion-MNIST size (the 60 000 training images in the 128-d domain features, 1 250 generated).
On each, one fresh process times, back to back:

* ``kid``: :func:`harness_plugins.metrics.kid.kid_from_features` with the metric's defaults
  (100 subsets of 1 000 rows, cubic kernel);
* ``fid (cold)``: what FID computes from the same features when nothing is cached: the
  reference statistics (float64 sums), their covariance factor, the distance;
* ``fid (warm)``: the distance alone (the reference statistics come from the cache on every
  evaluation after the first).

Both wall time and the process's CPU time are recorded (on a shared machine the CPU time is
the steadier figure); the ratios KID / FID are of medians over repeats. ``--baseline-python``
runs the same process with another interpreter (e.g. a virtual environment with the code
before a change), alternating with this one, so both share the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).parent / "results"
#: name: (reference rows, dimension, generated rows)
CASES = {"inception-size": (10_000, 2048, 1250), "fashion-mnist-size": (60_000, 128, 1250)}


def child(case: str) -> None:
    """Time KID and FID on the same features in this process; print one JSON line."""
    import torch
    from harness_plugins.metrics.kid import kid_from_features

    from harness.evaluation.fid import FeatureStats, fid_from_features

    n_ref, dim, n_gen = CASES[case]
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(n_ref, dim, generator=gen, dtype=torch.float64).abs()
    fake = 1.1 * torch.randn(n_gen, dim, generator=gen, dtype=torch.float64).abs()
    out: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        out[f"{name} wall s"] = time.perf_counter() - wall
        out[f"{name} cpu s"] = time.process_time() - cpu
        return value

    kid = timed("kid", lambda: kid_from_features(real, fake))
    stats = timed("fid reference statistics", lambda: FeatureStats().update(real))
    timed("fid covariance factor", stats.factor)
    fid = timed("fid distance", lambda: fid_from_features(fake, stats))
    for clock in ("wall", "cpu"):
        out[f"fid (cold) {clock} s"] = sum(out[f"fid {part} {clock} s"] for part in (
            "reference statistics", "covariance factor", "distance"))
        out[f"fid (warm) {clock} s"] = out[f"fid distance {clock} s"]
    out.update(kid_mean=kid[0], kid_std=kid[1], fid=fid, threads=torch.get_num_threads())
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS (a shared CPU makes more threads spin)")
    parser.add_argument("--case", default=",".join(CASES), help=f"of: {', '.join(CASES)}")
    parser.add_argument("--baseline-python", metavar="PY", default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from _machine import command_line, machine, write_results

    load = os.getloadavg()[0]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": ""}
    trees = {"this tree": sys.executable}
    if args.baseline_python:
        trees["baseline"] = args.baseline_python
    runs: dict[str, dict[str, list[dict]]] = {c: {t: [] for t in trees} for c in args.case.split(",")}
    for _ in range(args.repeats):
        for case, by_tree in runs.items():
            for tree, python in trees.items():
                proc = subprocess.run([python, __file__, "--child", case], env=env,
                                      capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(proc.stderr[-2000:])
                by_tree[tree].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = []
    for case, by_tree in runs.items():
        for tree, repeats in by_tree.items():
            med = {k: round(statistics.median(r[k] for r in repeats), 4)
                   for k in repeats[0] if k.endswith(" s")}
            ratios = {f"kid / {ref} ({clock})": round(med[f"kid {clock} s"] / med[f"{ref} {clock} s"], 2)
                      for ref in ("fid (cold)", "fid (warm)") for clock in ("cpu", "wall")}
            results.append({"case": case, "tree": tree, "python": trees[tree],
                            "reference_rows, dim, generated_rows": CASES[case],
                            "median_s": med, "ratios": ratios,
                            "kid": [repeats[0]["kid_mean"], repeats[0]["kid_std"]],
                            "fid": repeats[0]["fid"], "all": repeats})
    doc = {"command": "python " + " ".join(["benchmarks/bench_kid.py", *sys.argv[1:]]),
           "machine": {**machine(), "torch_threads": args.threads},
           "load_average_at_start": load, "load_average_at_end": os.getloadavg()[0],
           "results": results}
    lines = ["# KID against FID on the same features\n",
             command_line(doc, f"{args.threads} torch thread(s)", f"medians of {args.repeats}"),
             "| features | code | KID s (cpu) | FID cold s (cpu) | FID warm s (cpu) | "
             "KID / FID cold (cpu; wall) | KID / FID warm (cpu; wall) | KID |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m, q = r["median_s"], r["ratios"]
        lines.append(
            f"| {r['case']} {r['reference_rows, dim, generated_rows']} | {r['tree']} | "
            f"{m['kid cpu s']:.2f} | {m['fid (cold) cpu s']:.2f} | {m['fid (warm) cpu s']:.3f} | "
            f"{q['kid / fid (cold) (cpu)']:.2f}x; {q['kid / fid (cold) (wall)']:.2f}x | "
            f"{q['kid / fid (warm) (cpu)']:.2f}x; {q['kid / fid (warm) (wall)']:.2f}x | "
            f"{r['kid'][0]:.15g} ± {r['kid'][1]:.6g} |")
    print("\n".join(lines))
    if args.write:
        write_results(RESULTS / "kid_speed", doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
