"""LoRAE: this harness's ``lorae`` loss against the published definition, on identical weights.

The published loss (Mazumder et al., WACV 2024, as the authors' training script computes it):
``mean((x̂ - x)²) + λ ||W||_*``, the per-pixel mean squared error plus λ times the nuclear norm
(``torch.linalg.matrix_norm(W, ord="nuc")``, float32) of the weight W of the one bias-free
k×k linear layer between encoder and decoder; λ = 1e-5 by default. It is written below from
that description, independently of the harness's code.

Ours with ``rec_loss = "squared"`` is ``(1/B) Σ_i ||x̂_i - x_i||² + λ' ||W||_*`` (the nuclear
norm in float64 through ``svdvals``), i.e. D times the per-pixel mean (D pixels per image);
with λ' = D λ it is exactly D times the published loss. For each setting the script builds
one model, evaluates both losses on the same batch and the same weights (W trained away from
its initialisation by a few steps so its singular values are distinct), and prints the
relative difference of the losses and of their gradients for every parameter. The former
``penalty = "codes"`` (nuclear norm of the batch codes) is printed beside it: a different
number. Run from the repository root::

    python benchmarks/compare_lorae_authors.py --out benchmarks/results/lorae_authors.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def published_loss(x_hat: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                   lam: float) -> torch.Tensor:  # fmt: skip
    """The published LoRAE objective: per-pixel MSE + λ ||W||_* (float32, as published)."""
    return ((x_hat - x) ** 2).mean() + lam * torch.linalg.matrix_norm(weight, ord="nuc")


def compare(k: int, seed: int, lam: float, batch: int = 32) -> str:
    from harness_plugins.autoencoders.baselines import LoRAE, nuclear_norm

    from harness import DatasetInfo

    shape = (1, 28, 28)
    pixels = shape[0] * shape[1] * shape[2]
    torch.manual_seed(seed)
    model = LoRAE.from_config(LoRAE.Config(k=k, rec_loss="squared", reg_weight=pixels * lam),
                              DatasetInfo("mnist-like", shape))  # fmt: skip
    x = torch.rand((batch, *shape), generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):  # move W off its initialisation
        opt.zero_grad()
        model(x)["total"].backward()
        opt.step()
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    ours = model(x)["total"] / pixels
    ours_grads = torch.autograd.grad(ours, params)
    weight = model.latent_map[0].weight
    theirs = published_loss(model.decoder(model.encode(x)), x, weight, lam)
    their_grads = torch.autograd.grad(theirs, params)
    grad_rel = max(float((a - b).norm() / b.norm().clamp_min(1e-30))
                   for a, b in zip(ours_grads, their_grads, strict=True))  # fmt: skip
    nuc_ours = float(nuclear_norm(weight.detach()))
    nuc_theirs = float(torch.linalg.matrix_norm(weight.detach(), ord="nuc"))
    codes = float(nuclear_norm(model.encode(x).detach()))
    return (f"| {k} | {seed} | {lam:g} | {ours.item():.8f} | {theirs.item():.8f} | "
            f"{abs(ours.item() - theirs.item()) / abs(theirs.item()):.1e} | {grad_rel:.1e} | "
            f"{nuc_ours:.6f} | {nuc_theirs:.6f} | {codes:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = ["| k | seed | λ (published) | ours / D | published | loss rel. diff. "
             "| max gradient rel. diff. (all parameters) | ‖W‖_* ours (float64) "
             "| ‖W‖_* published (float32) | former penalty ‖Z‖_* (batch codes) |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for k, seed, lam in ((16, 0, 1e-5), (16, 1, 1e-5), (8, 2, 1e-3), (32, 3, 1e-1)):
        lines.append(compare(k, seed, lam))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
