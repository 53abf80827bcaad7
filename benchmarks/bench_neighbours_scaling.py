"""Time and peak memory of ``memorisation`` and ``prdc`` as the reference grows: 10 000,
60 000 and 200 000 reference rows of 128-d float64 features (the domain extractor's width),
1250 generated rows (50 of them verbatim copies of reference rows).

Each measurement runs in a fresh Python process; its memory is the peak resident size above
the process's size once the features exist (``resource.getrusage``), i.e. what the metric
itself holds on top of its inputs. Growth is printed as ratios against the 10 000-row
measurement of the same run (the machine is shared and noisy). ``prdc`` needs every real
point's k-th neighbour (n² distances); it is measured at the sizes given by ``--prdc-sizes``.
Run from the repository root::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_neighbours_scaling.py \\
        --out benchmarks/results/neighbours_scaling.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DIM, N_FAKE, N_COPIES = 128, 1250, 50


def measure(metric: str, n: int) -> dict[str, float]:
    """One measurement in this process (called in a child process by :func:`main`)."""
    import resource
    import time

    import torch
    from harness_plugins.metrics.neighbours import authenticity, prdc

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    real = torch.randn(n, DIM, generator=g, dtype=torch.float64)
    fake = torch.randn(N_FAKE, DIM, generator=g, dtype=torch.float64)
    fake[:N_COPIES] = real[torch.randperm(n, generator=g)[:N_COPIES]]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    values = (authenticity if metric == "memorisation" else prdc)(real, fake)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "extra_mb": (peak - before) / 1024,
            "features_mb": real.numel() * 8 / 2**20, **values}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,60000,200000")
    parser.add_argument("--prdc-sizes", default="10000,20000,60000")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("METRIC", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return
    rows, results = [], {}
    for metric, sizes in (("memorisation", args.sizes), ("prdc", args.prdc_sizes)):
        ref = None
        for n in (int(s) for s in sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", metric, str(n)],
                                 check=True, capture_output=True, text=True).stdout  # fmt: skip
            r = json.loads(out.strip().splitlines()[-1])
            ref = ref or (n, r)
            results[f"{metric}-{n}"] = r
            value = (f"memorised {r['memorised']:.4f}" if metric == "memorisation"
                     else f"precision {r['precision']:.4f}")  # fmt: skip
            rows.append(f"| {metric} | {n} | {r['seconds']:.2f} | {r['seconds'] / ref[1]['seconds']:.2f} "
                        f"| {n / ref[0]:.0f} | {r['extra_mb']:.0f} | {r['features_mb']:.0f} | {value} |")
            print(rows[-1], flush=True)
    head = ["| metric | reference rows | seconds | time / time at the first size | rows / first "
            "| peak MB above the inputs | reference features MB | value |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    text = "\n".join(head + rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
