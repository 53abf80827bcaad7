"""Cross-check: our precision / recall / density / coverage and authenticity against the
published ``prdc`` package (``compute_prdc``, Naeem et al.'s reference code) on identical
features, and the time each takes.

Features: the digits test split (297 images) and 297 noisy copies of training images as the
"generated" sets, against the 1500 digits training images, in the shipped digits domain
extractor's features; and Gaussian features at the default sizes (10 000 reference, 1250
generated, 128-d). Run from the repository root (``pip install prdc`` first)::

    nice -n 15 python benchmarks/bench_prdc.py --out benchmarks/results/prdc_crosscheck.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def compare(name: str, real: torch.Tensor, fake: torch.Tensor) -> list[str]:
    from harness_plugins.metrics.neighbours import prdc
    from prdc import compute_prdc

    start = time.perf_counter()
    ours = prdc(real, fake, k_pr=3, k_dc=5)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    r3 = compute_prdc(real.numpy(), fake.numpy(), nearest_k=3)
    r5 = compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    ref_s = time.perf_counter() - start
    ref = {"precision": r3["precision"], "recall": r3["recall"], "density": r5["density"],
           "coverage": r5["coverage"]}  # fmt: skip
    rows = []
    for key in ours:
        rows.append(f"| {name} | {key} | {ours[key]:.6f} | {float(ref[key]):.6f} | "
                    f"{abs(ours[key] - float(ref[key])):.1e} |")  # fmt: skip
    rows.append(f"| {name} | time (s) | {ours_s:.2f} | {ref_s:.2f} (two calls, k = 3 and 5) | |")
    return rows


def digits_features() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from harness_plugins.metrics.domain_extractor import DomainExtractor

    from harness import api

    splits = api.load_dataset("digits")
    ex = DomainExtractor.for_dataset(splits.train, splits.info)
    print("extractor:", ex.provenance()["extractor"], ex.describe()["feature_weights_sha256"])
    train = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    test = torch.stack([splits.test[i][0] for i in range(len(splits.test))])
    g = torch.Generator().manual_seed(0)
    copies = train[torch.randperm(len(train), generator=g)[: len(test)]]
    copies = (copies + 0.02 * torch.randn(copies.shape, generator=g)).clamp(0, 1)
    return ex(train), ex(test), ex(copies)


def main() -> None:
    from harness_plugins.metrics.neighbours import authenticity

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = ["| features | value | ours (torch, float64, chunked) | prdc 0.2 | abs. difference |",
             "|---|---|---|---|---|"]  # fmt: skip
    train, test, copies = digits_features()
    lines += compare("digits: test split vs train", train, test)
    lines += compare("digits: noisy copies vs train", train, copies)
    g = torch.Generator().manual_seed(1)
    real = torch.randn(10_000, 128, generator=g, dtype=torch.float64)
    fake = 1.1 * torch.randn(1250, 128, generator=g, dtype=torch.float64) + 0.05
    lines += compare("Gaussian 10000 x 1250, 128-d", real, fake)
    lines += ["", "| generated set (digits features) | authenticity | memorised |", "|---|---|---|"]
    for name, fake in (("test split (fresh images)", test), ("noisy copies of training", copies)):
        out = authenticity(train, fake)
        lines.append(f"| {name} | {out['authenticity']:.3f} | {out['memorised']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(f"# prdc cross-check\n\nCommand: `nice -n 15 python "
                            f"benchmarks/bench_prdc.py --out {args.out}`\n\n{text}")  # fmt: skip


if __name__ == "__main__":
    main()
