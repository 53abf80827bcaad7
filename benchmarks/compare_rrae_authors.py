"""RRAE on the bumps: this harness's ``rrae`` against the authors' PyTorch port (rraestorch).

Both train on the same standardised bumps (100 training images, 100 test images,
``data.seed`` 0) with the bumps preset: L=200, k=2, batch 64 (drop-last: one batch of 64 per
epoch), lr 1e-3, ``--steps`` steps. Ours is trained by ``harness.training.loop.train`` exactly as
``harness run`` does (AdaBelief, the paper's conv networks); the authors' is
``RRAEsTorch.RRAE_Trainor_class`` with ``RRAE_CNN`` (its default networks) and its own ``fit``
(Adam, per-batch truncated SVD), unchanged. Every ``--eval-every`` steps an observer (our
``on_log`` callback; a tracker for theirs, which their ``fit`` calls after each step) measures,
on the same images and with the same code for both models:

* ``train_batch``: the mean training loss over the last ``--eval-every`` steps (per-batch
  basis: the training objective);
* ``test_batch``: the 100 test images as one batch, truncated with *their own* SVD basis;
* ``test_global``: the test images through the global basis U_g (top-k left singular vectors
  of the whole training set's latent matrix: what ``RRAE.calibrate`` stores and evaluation
  uses);
* ``train_global``: the training images through U_g;
* ``test_full``: the test images decoded from the untruncated latent (no bottleneck at all:
  what rraestorch's ``evaluate`` computes when no basis was fine-tuned);
* ``proj_dist``: mean over 16 random training batches of 64 of ||U_b U_b^T - U_g U_g^T||_F
  (0: the same plane; 2: orthogonal planes for k=2), and ``max_angle_deg``, the mean largest
  principal angle between span(U_b) and span(U_g);
* ``tail_energy``: sqrt(sum_{j>k} s_j^2 / sum_j s_j^2) of the training latent matrix (0: the
  encoder's latents have rank k).

At the end, theirs is also scored with their own global basis (``get_basis``: per-batch bases
concatenated, re-orthonormalised, top k) and with their ``evaluate`` as shipped. Run::

    nice -n 15 python benchmarks/compare_rrae_authors.py --steps 1000 --seeds 0 1 2

needs ``pip install rraestorch==0.1.13`` (not a dependency of the harness). Writes
``--out`` (JSON: every curve) and prints a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.configuration.run_config import resolve
from harness.host.plugins import get_host
from harness.run.build import build_model, load_data
from harness.rundir.atomic import atomic_write_text
from harness.training.loop import seed_everything, train

K, LATENT, BATCH, LR = 2, 200, 64, 1e-3
N_PROBE_BATCHES = 16

Encode = Callable[[torch.Tensor], torch.Tensor]


def rel_err(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """100 ||X_hat - X||_F / ||X||_F, the harness's and the paper's reconstruction error."""
    return float(100.0 * torch.linalg.norm(x_hat - x) / torch.linalg.norm(x))


def top_basis(y: torch.Tensor, k: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k left singular vectors (L×k) of the L×N matrix whose columns are the rows of y,
    and all its singular values (float64)."""
    u, s, _ = torch.linalg.svd(y.double().mT, full_matrices=False)
    return u[:, :k], s


def project(y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Rows of y projected on span(u): (U U^T y_i)^T."""
    u = u.to(y.dtype)
    return y @ u @ u.mT


def basis_distance(u_b: torch.Tensor, u_g: torch.Tensor) -> tuple[float, float]:
    """(||P_b - P_g||_F, largest principal angle in degrees)."""
    proj = torch.linalg.norm(u_b @ u_b.mT - u_g @ u_g.mT)
    cosines = torch.linalg.svdvals(u_b.mT @ u_g).clamp(-1.0, 1.0)
    return float(proj), math.degrees(float(torch.arccos(cosines.min())))


@torch.no_grad()
def measure(encode: Encode, decode: Encode, x_train: torch.Tensor, x_test: torch.Tensor,
            probe: list[torch.Tensor]) -> dict[str, float]:
    """Every per-checkpoint number of the module docstring, for one (encode, decode) pair."""
    y_train, y_test = encode(x_train), encode(x_test)
    u_g, s = top_basis(y_train)
    u_t, _ = top_basis(y_test)
    dists = [basis_distance(top_basis(encode(x_train[idx]))[0], u_g) for idx in probe]
    energy = s.pow(2)
    return {
        "test_batch": rel_err(decode(project(y_test, u_t)), x_test),
        "test_global": rel_err(decode(project(y_test, u_g)), x_test),
        "train_global": rel_err(decode(project(y_train, u_g)), x_train),
        "test_full": rel_err(decode(y_test), x_test),
        "proj_dist": sum(d for d, _ in dists) / len(dists),
        "max_angle_deg": sum(a for _, a in dists) / len(dists),
        "tail_energy": float(torch.sqrt(energy[K:].sum() / energy.sum())),
        "s1": float(s[0]), "s2": float(s[1]), "s3": float(s[2]),
    }


def in_eval_mode(model: torch.nn.Module, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    was = model.training
    model.eval()
    try:
        return fn()
    finally:
        model.train(was)


# ------------------------------------------------------------------------------------ ours
def run_ours(seed: int, steps: int, every: int, data: dict[str, Any]) -> dict[str, Any]:
    """``harness.training.loop.train`` on the bumps preset (plus ``data["ours_sets"]``, e.g.
    ``train.optimizer=adam``), observed through ``on_log``."""
    host = get_host()
    cfg = resolve(model="rrae", dataset="bumps", seed=seed, host=host,
                  sets=[f"train.steps={steps}", f"train.log_every={every}",
                        f"train.checkpoint_every={steps}", *data.get("ours_sets", [])])
    assert (cfg.model_cfg.k, cfg.model_cfg.latent_dim, cfg.train.batch_size) == (K, LATENT, BATCH)
    splits = load_data(host, cfg)
    seed_everything(seed)
    model = build_model(host, cfg, splits.info)
    curve: list[dict[str, Any]] = []

    def observe(record: dict[str, Any]) -> None:
        step = int(record["step"])
        if step % every == 0:
            point = in_eval_mode(model, lambda: measure(model.encoder, model.decoder,
                                                        data["x_train"], data["x_test"],
                                                        data["probe"]))
            curve.append({"step": step, "train_batch": float(record["loss"]["rec"]), **point})
            data["progress"]("ours", seed, curve)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, splits, cfg, tmp, on_log=observe)
    wall = time.perf_counter() - t0
    trained = result.model
    trained.eval()
    with torch.no_grad():
        harness_test = rel_err(trained.reconstruct(data["x_test"]), data["x_test"])
    return {"curve": curve, "wall_s": wall, "final": {"harness_reconstruct_test": harness_test}}


# -------------------------------------------------------------------------------- authors'
def run_authors(seed: int, steps: int, every: int, data: dict[str, Any]) -> dict[str, Any]:
    """rraestorch's RRAE_Trainor_class.fit, unchanged, observed by a tracker."""
    import RRAEsTorch.config  # noqa: F401  - sets the model base class AE_classes needs
    from RRAEsTorch.AE_classes import RRAE_CNN
    from RRAEsTorch.trackers import RRAE_fixed_Tracker
    from RRAEsTorch.training_classes import RRAE_Trainor_class
    from RRAEsTorch.utilities import get_basis

    x_train, x_test = data["x_train"], data["x_test"]
    curve: list[dict[str, Any]] = []

    class Observer(RRAE_fixed_Tracker):
        """Their fixed-k tracker (k_max = 2 every step) that also measures every few steps."""

        def __init__(self) -> None:
            super().__init__(k_init=K)
            self.step, self.losses = 0, []

        def __call__(self, loss: Any, *args: Any, **kwargs: Any) -> dict[str, int]:
            self.step += 1
            self.losses.append(float(loss.detach()))
            if self.step % every == 0:
                model = trainor.model
                point = in_eval_mode(model, lambda: measure(model.encode, model.decode,
                                                            x_train, x_test, data["probe"]))
                train_batch = sum(self.losses) / len(self.losses)
                self.losses = []
                curve.append({"step": self.step, "train_batch": train_batch, **point})
                data["progress"]("authors", seed, curve)
            return super().__call__()

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainor = RRAE_Trainor_class(x_train, RRAE_CNN, folder=tmp, channels=1, height=64,
                                     width=64, latent_size=LATENT, k_max=K)
        t0 = time.perf_counter()
        trainor.fit(x_train, x_train, loss_type="RRAE", step_st=[steps], lr_st=[LR],
                    batch_size_st=[BATCH], print_every=steps, verbatim={"print_type": "std"},
                    training_kwargs={"tracker": Observer()})
        wall = time.perf_counter() - t0
    model = trainor.model
    model.eval()
    with torch.no_grad():
        # as their fine_tune_basis calls it: k_max given, per-batch bases concatenated, top k
        their_basis = get_basis(True, model, K, BATCH, x_train, basis_kwargs={"k_max": K})
        u_g, _ = top_basis(model.encode(x_train))
        y_test = model.encode(x_test)
        final = {
            "their_basis_test": rel_err(model.decode(project(y_test, their_basis)), x_test),
            "their_basis_vs_global_proj_dist": basis_distance(their_basis.double(), u_g)[0],
            # their evaluate(): model(x, apply_basis=True) with no stored basis -> no truncation
            "their_evaluate_test": rel_err(model(x_test, apply_basis=True), x_test),
            "their_forward_k2_test": rel_err(model(x_test, k_max=K), x_test),
        }
    return {"curve": curve, "wall_s": wall, "final": final}


# ------------------------------------------------------------------------------------ main
def bumps_tensors() -> dict[str, Any]:
    host = get_host()
    cfg = resolve(model="rrae", dataset="bumps", seed=0, host=host)
    splits = load_data(host, cfg)
    x_train = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    x_test = torch.stack([splits.test[i][0] for i in range(len(splits.test))])
    g = torch.Generator().manual_seed(1234)
    probe = [torch.randperm(len(x_train), generator=g)[:BATCH] for _ in range(N_PROBE_BATCHES)]
    return {"x_train": x_train, "x_test": x_test, "probe": probe}


KEYS = ("train_batch", "test_batch", "test_global", "train_global", "test_full", "proj_dist",
        "max_angle_deg", "tail_energy")


def mean_std(values: list[float]) -> str:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / max(1, len(values) - 1))
    return f"{m:.2f} ± {sd:.2f}" if abs(m) < 1e3 else f"{m:.3g} ± {sd:.2g}"


def summary(results: dict[str, dict[int, dict[str, Any]]], steps: int) -> str:
    lines = [f"RRAE on the bumps, {steps} steps, seeds {sorted(int(s) for s in next(iter(results.values())))}",
             "", "| implementation | " + " | ".join(KEYS) + " | wall s |",
             "|---" * (len(KEYS) + 2) + "|"]
    for name, by_seed in results.items():
        last = [r["curve"][-1] for r in by_seed.values()]
        cells = [mean_std([p[key] for p in last]) for key in KEYS]
        walls = [r["wall_s"] for r in by_seed.values() if r["wall_s"] is not None]
        wall = mean_std(walls) if walls else "stopped early"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {wall} |")
    lines += ["", "Curves (mean over seeds): step, train_batch, test_batch, test_global, "
              "test_full, proj_dist"]
    for name, by_seed in results.items():
        lines.append(f"- {name}:")
        runs = list(by_seed.values())
        for i, point in enumerate(runs[0]["curve"]):
            avg = {k: sum(r["curve"][i][k] for r in runs) / len(runs) for k in KEYS}
            lines.append(f"  {point['step']:5d}: {avg['train_batch']:7.2f} {avg['test_batch']:7.2f}"
                         f" {avg['test_global']:7.2f} {avg['test_full']:7.2f} "
                         f"{avg['proj_dist']:5.3f}")
    lines.append("")
    for name, by_seed in results.items():
        finals = [r["final"] for r in by_seed.values() if r["final"]]
        for key in finals[0] if finals else ():
            lines.append(f"{name} final {key}: {mean_std([f[key] for f in finals])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", choices=["ours", "authors"], default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a --set for ours (repeatable), e.g. train.optimizer=adam")
    p.add_argument("--name", default="ours", help="the label of ours in the results "
                   "(e.g. ours-adam with --set train.optimizer=adam)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rrae_authors_bumps.json"))
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="only merge these JSON files of earlier runs (e.g. one per seed) into --out")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.eval_every < 1 or args.steps % args.eval_every:
        print("Error: --steps must be a positive multiple of --eval-every", file=sys.stderr)
        return 2
    data = bumps_tensors()

    def progress(name: str, seed: int, curve: list[dict[str, Any]]) -> None:
        """The curve so far, so that a run stopped early still leaves its measurements."""
        atomic_write_text(args.out.with_suffix(f".{name}-{seed}.partial.json"), json.dumps(curve))

    data["progress"] = progress
    data["ours_sets"] = args.sets
    runners = {"ours": run_ours, "authors": run_authors}
    if args.only:
        runners = {args.only: runners[args.only]}
    runners = {(args.name if name == "ours" else name): fn for name, fn in runners.items()}
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in runners}
    for seed in args.seeds:
        for name, fn in runners.items():
            results[name][seed] = fn(seed, args.steps, args.eval_every, data)
            print(f"{name} seed {seed}: {results[name][seed]['curve'][-1]}", flush=True)
    doc = {"steps": args.steps, "eval_every": args.eval_every, "seeds": args.seeds,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}
    write(doc, args.out)
    return 0


def write(doc: dict[str, Any], out: Path) -> None:
    """The JSON (every curve) and the markdown summary beside it; printed too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1))
    text = summary(doc["results"], doc["steps"])
    atomic_write_text(out.with_suffix(".md"), text + "\n")
    print(text)


def merge(files: list[Path], out: Path) -> int:
    """One document from several runs of the same budget (seeds or implementations split).

    A ``*.NAME-SEED.partial.json`` file (the curve a run had written when it was stopped)
    counts as that run; all curves are then cut to the last step every run reached, and
    ``steps`` is that step.
    """
    results: dict[str, dict[str, Any]] = {}
    base: dict[str, Any] = {}
    for f in files:
        doc = json.loads(f.read_text())
        if isinstance(doc, list):  # a partial curve: the name and seed are in the file name
            name, seed = f.name.split(".")[-3].rsplit("-", 1)
            results.setdefault(name, {})[seed] = {"curve": doc, "wall_s": None, "final": {}}
            continue
        base = base or doc
        for name, by_seed in doc["results"].items():
            results.setdefault(name, {}).update(by_seed)
    common = min(len(r["curve"]) for by_seed in results.values() for r in by_seed.values())
    if common == 0:
        print("Error: a --merge file has no measurement yet", file=sys.stderr)
        return 2
    for by_seed in results.values():
        for r in by_seed.values():
            r["curve"] = r["curve"][:common]
    steps = next(iter(next(iter(results.values())).values()))["curve"][-1]["step"]
    seeds = sorted({int(s) for by_seed in results.values() for s in by_seed})
    write({**base, "steps": steps, "seeds": seeds, "results": results}, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
