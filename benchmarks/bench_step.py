"""Step time of every autoencoder model, and the share of the SVD bottleneck in it.

Why: the rrae family adds a truncated SVD of the L×B latent matrix to every step; the goal of
issue #3 is that it costs under 10% of a step at the CelebA configuration (L=512, B=576,
k=186) on CPU, that an rrae-family step stays within 1.2x of the ae step, and that the
bottleneck implementation kept is the fastest exact one that passes the gradient tests.

What it does, per problem (the paper's configurations, SPEC table):

1. times the bottleneck alone (forward + backward of the rank-k reconstruction ``U_k A``
   of an L×B matrix) for the methods of :mod:`harness_plugins.autoencoders.svd` ("gram",
   "svd") and for ``torch.linalg.svd`` with torch's own backward (the reference, not stable
   on ties), in float32 and float64;
2. times one full training step (forward, backward, AdaBelief update, as in training) of
   each model on random images of the problem's shape;
3. reports ratios measured in the same run: each step against the ae step, and the
   bottleneck time against each rrae-family step.

Run (the committed figures): ``python benchmarks/bench_step.py --out benchmarks/results/step_time``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from harness_plugins.autoencoders.models import MODELS
from harness_plugins.autoencoders.svd import truncated_svd

from harness import DatasetInfo, StepContext

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

PROBLEMS = {
    # name: (shape C,H,W, L, k, batch) from SPEC's configuration table
    "bumps": ((1, 64, 64), 200, 2, 64),
    "mnist": ((1, 28, 28), 100, 16, 576),
    "cifar10": ((3, 32, 32), 512, 60, 64),
    "celeba": ((3, 160, 160), 512, 186, 576),
}
ORDER = ["ae", "vae", "vae-identity", "rrae", "vrrae", "rrae-vae", "vrrae-nokl"]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds of ``repeats`` calls after ``warmup`` untimed ones, on the chosen clock (wall,
    or this process's CPU time, which a shared, loaded machine disturbs much less)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        out.append(CLOCK() - start)
    return out


def bottleneck_fn(l_dim: int, b: int, k: int, method: str, dtype: torch.dtype) -> Callable[[], None]:
    """Forward + backward of sum(G * U_k A) for an L×B latent-like matrix."""
    g = torch.Generator().manual_seed(0)
    # latent-like spectrum: a few strong directions over a noise floor
    y = (torch.randn(l_dim, b, generator=g) * torch.logspace(0, -3, l_dim)[:, None]).to(dtype)
    weight = torch.randn(l_dim, b, generator=g).to(dtype)

    def run() -> None:
        leaf = y.clone().requires_grad_()
        if method == "torch":
            u, s, vh = torch.linalg.svd(leaf, full_matrices=False)
            recon = u[:, :k] @ (s[:k, None] * vh[:k])
        else:
            out = truncated_svd(leaf, k, method)
            recon = out.U @ out.coefficients
        (recon * weight).sum().backward()

    return run


def step_fn(name: str, shape: tuple[int, int, int], l_dim: int, k: int, b: int) -> Callable[[], None]:
    """One training step as the trainer does it: forward, backward, AdaBelief update."""
    from harness.training.optim import AdaBelief

    if name == "ae@L":  # ae with a latent of size L: the rrae family's networks, no SVD
        name, k = "ae", l_dim
    cls = MODELS[name]
    fields = cls.Config.__dataclass_fields__
    values = {"k": k, **({"latent_dim": l_dim} if "latent_dim" in fields else {})}
    torch.manual_seed(0)
    model = cls.from_config(cls.Config(**values), DatasetInfo(name, shape))
    opt = AdaBelief(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-16,
                    weight_decay=0.0)
    x = torch.rand((b, *shape), generator=torch.Generator().manual_seed(1))
    state = {"step": 0}

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        loss = model(x, StepContext(step=state["step"], seed=0))
        loss["total"].backward()
        opt.step()
        state["step"] += 1

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="mnist,celeba", help="comma list of " + ",".join(PROBLEMS))
    parser.add_argument("--models", default=",".join(ORDER),
                        help="comma list; 'ae@L' is ae with latent L (the rrae networks, no SVD)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model")
    parser.add_argument("--bottleneck-repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or process CPU time (robust on a loaded machine; "
                             "use with --threads 1)")
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    results: dict[str, object] = {"machine": machine(), "command": " ".join(["python", *sys.argv]),
                                  "clock": args.clock, "problems": {}}
    md = ["# Step time of the autoencoder models (CPU)", "",
          f"Command: `{results['command']}`", "",
          "Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()), "",
          f"Clock: {args.clock} time. Minimum of {args.repeats} timed steps per model (models interleaved round robin) "
          f"after {args.warmup} warm-up step(s); bottleneck alone: minimum of "
          f"{args.bottleneck_repeats}. Ratios are within this run. Load average at the start: "
          f"{os.getloadavg()[0]:.1f} (the machine is shared: compare ratios, not absolutes).", ""]
    for problem in [p for p in args.problems.split(",") if p]:
        shape, l_dim, k, b = PROBLEMS[problem]
        print(f"== {problem}: shape {shape}, L={l_dim}, k={k}, batch={b}", flush=True)
        bott: dict[str, float] = {}
        for method in ["gram", "svd", "torch"]:
            for dtype in [torch.float32, torch.float64]:
                if method != "torch" and dtype == torch.float64:
                    continue  # ours compute in float64 internally whatever the input
                key = f"{method}" if method != "torch" else f"torch-{str(dtype)[6:]}"
                t = timed(bottleneck_fn(l_dim, b, k, method, dtype), args.bottleneck_repeats, 1)
                bott[key] = min(t)
                print(f"  bottleneck {key:14s} {bott[key] * 1e3:9.1f} ms", flush=True)
        # Round robin over the models (one step each per round), so that a change of machine
        # load during the run hits every model alike; the minimum over rounds is reported
        # (the least disturbed measurement), the median alongside.
        fns = {name: step_fn(name, shape, l_dim, k, b) for name in models}
        for fn in fns.values():
            for _ in range(args.warmup):
                fn()
        samples: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                samples[name] += timed(fn, 1, 0)
        steps = {name: min(t) for name, t in samples.items()}
        for name, t in samples.items():
            print(f"  step {name:14s} {steps[name]:8.3f} s  (all: {', '.join(f'{v:.3f}' for v in t)})",
                  flush=True)
        del fns
        ae = steps.get("ae")
        default = "gram"
        results["problems"][problem] = {
            "shape": list(shape), "L": l_dim, "k": k, "batch": b,
            "bottleneck_s": bott, "step_s": steps, "step_samples_s": samples,
            "default_method": default, "load_average": os.getloadavg(),
        }
        md += [f"## {problem}: images {shape[0]}×{shape[1]}×{shape[2]}, L={l_dim}, k={k}, "
               f"batch={b}", "",
               "Bottleneck alone (forward + backward of U_k A, L×B):", "",
               "| method | ms | vs gram |", "|---|---|---|"]
        for key, val in bott.items():
            md.append(f"| {key} | {val * 1e3:.1f} | {val / bott['gram']:.2f}x |")
        md += ["", "One training step (forward, backward, AdaBelief):", "",
               "| model | s/step (min) | median | vs ae | bottleneck (gram) share |",
               "|---|---|---|---|---|"]
        for name, val in steps.items():
            ratio = f"{val / ae:.2f}x" if ae else "-"
            share = f"{100 * bott[default] / val:.1f}%" if name in (
                "rrae", "vrrae", "rrae-vae", "vrrae-nokl") else "-"
            med = statistics.median(samples[name])
            md.append(f"| {name} | {val:.3f} | {med:.3f} | {ratio} | {share} |")
        md.append("")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        out.with_suffix(".md").write_text("\n".join(md) + "\n")
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    else:
        print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
