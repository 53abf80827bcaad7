"""The rrae bottleneck in the regime the bumps preset reaches (L=200, B=64, k=2, top two
singular values within a few percent of each other, a small tail), checked against an
independent reference: torch's own SVD autograd of the rank-k projection U_k U_k^T Y.

Why: RRAE's codes on the bumps end up on a circle (s1 ≈ s2). The rank-k projection does not
depend on how U_k is rotated inside its plane, so the large 1/(s_1^2 - s_2^2) terms of the
SVD backward must cancel; a backward that mishandles them (drops only one of the pair, loses
the cancellation to rounding, or returns inf/NaN) would give a wrong training gradient
exactly where RRAE trains badly. The top-k/tail terms (s_2 vs s_3) are checked too.
"""

from __future__ import annotations

import pytest
import torch
from harness_plugins.autoencoders.svd import truncated_svd

L_DIM, BATCH, K = 200, 64, 2


def latents(top: tuple[float, float], seed: int = 0) -> torch.Tensor:
    """An L×B float64 latent matrix with singular values ``top``, then a tail like the one
    measured on the bumps (s3 ≈ 7 % of s1, decaying)."""
    g = torch.Generator().manual_seed(seed)
    tail = [90.0 * 0.8**j for j in range(BATCH - K)]
    s = torch.tensor([*top, *tail], dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(L_DIM, BATCH, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(BATCH, BATCH, generator=g, dtype=torch.float64))
    return u @ torch.diag(s) @ v.T


def reference_projection(y: torch.Tensor) -> torch.Tensor:
    u, _, _ = torch.linalg.svd(y, full_matrices=False)
    return u[:, :K] @ u[:, :K].T @ y


@pytest.mark.parametrize("method", ["gram", "svd"])
@pytest.mark.parametrize("top", [(1300.0, 1214.0), (1300.0, 1290.0), (1300.0, 1299.0)])
def test_projection_gradient_matches_torch_near_a_tie(method: str, top: tuple[float, float]) -> None:
    y0 = latents(top)
    weights = torch.randn(L_DIM, BATCH, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)

    y = y0.clone().requires_grad_()
    svd = truncated_svd(y, K, method)
    ours = svd.U @ svd.coefficients  # the decoder input U_k A, columns = samples
    (ours * weights).sum().backward()

    y_ref = y0.clone().requires_grad_()
    ref = reference_projection(y_ref)
    (ref * weights).sum().backward()

    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    assert y.grad is not None and y_ref.grad is not None
    # relative to the gradient's size: the near-tie terms are O(1/(s1^2 - s2^2)) large
    err = (y.grad - y_ref.grad).norm() / y_ref.grad.norm()
    assert err < 1e-6, f"{method}: gradient off by {float(err):.2e} (relative)"


def test_float32_latents_keep_the_gradient_near_a_tie() -> None:
    """The model's latents are float32; the bottleneck works in float64 internally, so the
    gradient of the projection stays within float32 rounding of the exact one."""
    y0 = latents((1300.0, 1290.0), seed=2)
    weights = torch.randn(L_DIM, BATCH, generator=torch.Generator().manual_seed(3),
                          dtype=torch.float64)
    y = y0.float().requires_grad_()
    svd = truncated_svd(y, K, "gram")
    ((svd.U @ svd.coefficients) * weights.float()).sum().backward()
    y_ref = y0.float().double().requires_grad_()
    (reference_projection(y_ref) * weights).sum().backward()
    assert y.grad is not None and y_ref.grad is not None
    err = (y.grad.double() - y_ref.grad).norm() / y_ref.grad.norm()
    assert err < 1e-4, f"gradient off by {float(err):.2e} (relative)"
