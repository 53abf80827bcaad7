"""Held-out accuracy and cost of the ``domain`` FID extractor's recipe on real datasets.

    .venv/bin/python benchmarks/bench_extractor.py fashion-mnist digits [--out FILE.md]

Trains the recipe exactly as the ``fid`` metric does (plugins/metrics/domain.py: held-out
split of the training set, seed 0) and reports the held-out accuracy, the accuracy on the
dataset's own test split, the training time, and the feature-extraction throughput (images/s)
of the trained extractor on this machine's CPU. Datasets load offline from the usual places
(mnist / fashion-mnist: IDX files, cifar10: local files); a dataset that is not found is
reported as "not available here", never guessed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine as describe_machine  # noqa: E402


def measure(name: str) -> dict:
    from harness_plugins.metrics import domain
    from harness_plugins.metrics.domain_extractor import DomainExtractor

    from harness.api import DataConfig
    from harness.host.plugins import get_host

    host = get_host()
    try:
        splits = host.registry("dataset").get(name).load()(DataConfig())
    except Exception as exc:  # noqa: BLE001 - report, do not guess
        return {"dataset": name, "available": False, "why": str(exc).splitlines()[0]}
    info, train, test = splits.info, splits.train, splits.test
    hold, fit = domain.split_indices(len(train))
    start = time.perf_counter()
    fx, fy = domain._fetch(train, fit)
    hx, hy = domain._fetch(train, hold)
    net, acc = domain.train_classifier(domain.prepare(fx), fy, domain.prepare(hx), hy,
                                       info.shape[0], int(info.num_classes or fy.max() + 1),
                                       progress=True, what=name)  # fmt: skip
    seconds = time.perf_counter() - start
    tx, ty = domain._fetch(test, torch.arange(len(test)))
    test_acc = domain.classifier_accuracy(net, tx, ty)
    ex = DomainExtractor(net, {})
    batch = tx[:512]
    ex(batch[:64])
    t = time.perf_counter()
    for _ in range(3):
        ex(batch)
    ips = 3 * batch.shape[0] / (time.perf_counter() - t)
    return {"dataset": name, "available": True, "n_fit": len(fit), "n_holdout": len(hold),
            "holdout_accuracy": acc, "test_accuracy": test_acc, "n_test": len(test),
            "train_seconds": seconds, "features_per_second_cpu": ips,
            "expected": domain.EXPECTED_ACCURACY.get(name)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    rows = [measure(n) for n in args.datasets]
    machine = describe_machine()
    lines = ["| dataset | fitted / held out | held-out acc. | test acc. | recipe target | "
             "train time | features/s (CPU) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["available"]:
            lines.append(f"| {r['dataset']} | not available here: {r['why'][:80]} |||||")
            continue
        lines.append(f"| {r['dataset']} | {r['n_fit']} / {r['n_holdout']} | "
                     f"{r['holdout_accuracy']:.4f} | {r['test_accuracy']:.4f} ({r['n_test']}) | "
                     f"{r['expected']} | {r['train_seconds']:.0f} s | "
                     f"{r['features_per_second_cpu']:.0f} |")  # fmt: skip
    text = "\n".join(lines)
    print(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(
            "# Domain FID extractor: held-out accuracy\n\n"
            f"Command: `.venv/bin/python benchmarks/bench_extractor.py {' '.join(args.datasets)}"
            f" --out {args.out}`\n\nMachine: {machine}\n\n{text}\n")


if __name__ == "__main__":
    main()
