"""The Frechet distance at Inception size: our routes against pytorch-fid's and torchmetrics'.

    python benchmarks/bench_fid.py [--n-ref 10000] [--n-gen 1250] [--dim 2048]
                                             [--out benchmarks/results/fid_speed]

One run, the same features for every route (correlated, non-centred Gaussian features with a
decaying spectrum, like pool3 features): reference statistics of ``n_ref`` rows (computed once,
not timed: every route gets them, and the harness caches them per dataset), generated rows
``n_gen``. Timed, per scoring of one generated set:

* **ours, N x N route** (``harness.evaluation.fid.fid_from_features``; the reference covariance factor
  is computed once per dataset and cached with its statistics, so it is timed separately as
  a one-off cost);
* **ours, d x d route** (``harness.evaluation.fid.fid_from_stats``: symmetric ``eigh``);
* **pytorch-fid** ``calculate_frechet_distance`` (``scipy.linalg.sqrtm`` of C1 C2);
* **torchmetrics** ``FrechetInceptionDistance`` compute (``eigvals`` of C1 C2, float64).

The generated statistics (mean, covariance) are included in every route's time. Prints the
values (equal to ~1e-8 relative) and the speed-up of each route over pytorch-fid; then the
feature-extraction throughput (images/s) of the FID extractors on this machine's CPU
(domain CNN at 28x28 inputs, pytorch-fid Inception-v3 architecture with random weights, which
costs the same as the real weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, write_results  # noqa: E402


def features(n_ref: int, n_gen: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * (np.arange(1, d + 1) ** -0.3)[:, None]
    ref = rng.normal(size=(n_ref, d)) @ mix + 0.3
    gen = 1.1 * rng.normal(size=(n_gen, d)) @ mix + 0.35
    return ref, gen


def timed(fn: Any, repeat: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return float(value), best


class Rows(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def distance_routes(n_ref: int, n_gen: int, d: int, repeat: int) -> dict[str, Any]:
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torchmetrics.image.fid import FrechetInceptionDistance

    from harness.evaluation.fid import FeatureStats, fid_from_features, fid_from_stats

    ref, gen = features(n_ref, n_gen, d)
    stats = FeatureStats().update(ref)
    mu1, c1 = stats.mean, stats.cov
    start = time.perf_counter()
    stats.factor()
    factor_seconds = time.perf_counter() - start

    tm = FrechetInceptionDistance(feature=Rows(d))
    tm.update(torch.from_numpy(ref), real=True)
    real_state = {k: getattr(tm, k).clone() for k in
                  ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")}

    def torchmetrics_route() -> float:
        tm.reset()  # keeps nothing: put the (precomputed) reference sums back
        for k, v in real_state.items():
            setattr(tm, k, v.clone())
        tm.update(torch.from_numpy(gen), real=False)
        return float(tm.compute())

    routes = {
        "ours (N x N, cached reference factor)": lambda: fid_from_features(gen, stats),
        "ours (d x d eigh)": lambda: fid_from_stats(FeatureStats().update(gen), stats),
        "pytorch-fid (scipy sqrtm)": lambda: calculate_frechet_distance(
            mu1, c1, gen.mean(0), np.cov(gen, rowvar=False)),
        "torchmetrics (eigvals)": torchmetrics_route,
    }
    out = {name: timed(fn, repeat if "sqrtm" not in name else 1) for name, fn in routes.items()}
    base = out["pytorch-fid (scipy sqrtm)"][1]
    ref_value = out["ours (d x d eigh)"][0]
    return {
        "n_ref": n_ref, "n_gen": n_gen, "dim": d, "repeat": repeat,
        "reference_factor_seconds_once_per_dataset": factor_seconds,
        "routes": {name: {"value": v, "seconds": s, "speedup_vs_pytorch_fid": base / s,
                          "rel_diff_vs_ours_dxd": abs(v - ref_value) / ref_value}
                   for name, (v, s) in out.items()},
    }  # fmt: skip


def throughput(n: int = 256) -> dict[str, float]:
    from harness_plugins.metrics.domain import DomainClassifier
    from harness_plugins.metrics.domain_extractor import DomainExtractor
    from harness_plugins.metrics.inception import InceptionExtractor

    images = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    result = {}
    for name, ex, count in (
        ("domain CNN (28x28 grayscale)", DomainExtractor(DomainClassifier(1, 10), {}), n),
        ("pytorch-fid Inception-v3 (resized to 299x299)", InceptionExtractor.random_init(), 32),
    ):
        ex(images[:8])  # warm-up
        start = time.perf_counter()
        for i in range(0, count, 64):
            ex(images[i : min(i + 64, count)])
        result[name] = count / (time.perf_counter() - start)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--n-gen", type=int, default=1_250)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = p.parse_args()
    doc = {"machine": machine(),
           "distance": distance_routes(args.n_ref, args.n_gen, args.dim, args.repeat),
           "features_per_second_cpu": throughput()}  # fmt: skip
    dist = doc["distance"]
    lines = [f"Frechet distance, d={dist['dim']}, {dist['n_ref']} reference vs {dist['n_gen']} "
             f"generated features (best of {dist['repeat']}; pytorch-fid once)", "",
             "| route | FID | seconds | speed-up vs pytorch-fid | rel. diff vs d x d |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in dist["routes"].items():
        lines.append(f"| {name} | {r['value']:.6f} | {r['seconds']:.3f} | "
                     f"{r['speedup_vs_pytorch_fid']:.1f}x | {r['rel_diff_vs_ours_dxd']:.1e} |")
    lines += ["", f"One-off per dataset (cached with the reference statistics): the reference "
              f"covariance factor, {dist['reference_factor_seconds_once_per_dataset']:.2f} s.",
              "", "| extractor (CPU) | images/s |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.1f} |" for k, v in doc["features_per_second_cpu"].items()]
    text = "\n".join(lines)
    print(text)
    if args.out:
        cmd = " ".join(["benchmarks/bench_fid.py", *sys.argv[1:]])
        write_results(args.out, doc, f"# FID speed\n\nCommand: `python {cmd}`\n\n"
                                     f"Machine: {doc['machine']}\n\n{text}\n")


if __name__ == "__main__":
    main()
