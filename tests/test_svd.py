"""The SVD bottleneck: exact gradients on distinct values, finite ones on ties and zeros, the
properties SPEC lists, and the streaming inference basis against a direct SVD."""

from __future__ import annotations

import pytest
import torch
from harness_plugins.autoencoders.svd import (
    basis_from_gram,
    column_signs,
    truncated_svd,
)
from hypothesis import given, settings
from hypothesis import strategies as st

METHODS = ["gram", "svd"]
SHAPES = [(6, 9), (9, 6), (7, 7)]  # L < B, L > B, square


def planted(l_dim: int, b: int, s: list[float], seed: int = 0) -> torch.Tensor:
    """An L×B float64 matrix with exactly the singular values ``s`` (ties and zeros allowed)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(l_dim, len(s), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(b, len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


def random_matrix(l_dim: int, b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(l_dim, b, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_distinct_singular_values(method: str, shape: tuple[int, int]) -> None:
    y = random_matrix(*shape).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: tuple(truncated_svd(t, 3, method)), (y,))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_svd_forward_and_backward(method: str, shape: tuple[int, int]) -> None:
    """On distinct values the stable backward equals the exact one (torch's own)."""
    k = 3
    y = random_matrix(*shape, seed=1).requires_grad_()
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(shape[0], k, generator=g, dtype=torch.float64),
               torch.randn(k, generator=g, dtype=torch.float64),
               torch.randn(shape[1], k, generator=g, dtype=torch.float64)]
    ours = truncated_svd(y, k, method)
    (g_ours,) = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ours, weights, strict=True)), y)

    u, s, vh = torch.linalg.svd(y, full_matrices=False)
    signs = column_signs(u.detach())
    ref = (u[:, :k] * signs[:k], s[:k], vh.mT[:, :k] * signs[:k])
    (g_ref,) = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights, strict=True)), y)

    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize(
    "spectrum,k",
    [
        ([3.0, 2.0, 2.0, 1.0, 0.5], 3),  # a tie inside the top k
        ([3.0, 2.0, 1.0, 0.0, 0.0], 2),  # zeros (tied) below the top k
        ([4.0, 3.0, 3.0, 3.0, 0.0], 4),  # a triple tie, and a zero that stays out of the top k
    ],
)
def test_gradcheck_projection_with_planted_ties(spectrum: list[float], k: int) -> None:
    """U and V are not unique on a tie, but the rank-k reconstruction U_k A is smooth when
    s_k > s_{k+1}: the default ("gram") method's gradient matches finite differences there."""
    method = "gram"
    for shape in [(6, 8), (8, 6)]:
        y = planted(*shape, spectrum).requires_grad_()

        def projected(t: torch.Tensor) -> torch.Tensor:
            out = truncated_svd(t, k, method)
            return out.U @ out.coefficients

        assert torch.autograd.gradcheck(projected, (y,))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "spectrum,k",
    [
        ([2.0, 2.0, 2.0, 2.0], 2),  # every value tied, tie across the truncation
        ([5.0, 1.0, 0.0, 0.0], 3),  # a zero inside the top k (rank < k)
        ([0.0, 0.0, 0.0, 0.0], 2),  # the zero matrix
        ([1.0, 1.0, 1e-13, 0.0], 3),  # a value below 1e-11 of the largest
    ],
)
def test_ties_and_zeros_give_finite_gradients(
    method: str, dtype: torch.dtype, spectrum: list[float], k: int
) -> None:
    for shape in [(5, 7), (7, 5)]:
        y = planted(*shape, spectrum, seed=3).to(dtype).requires_grad_()
        out = truncated_svd(y, k, method)
        g = torch.Generator().manual_seed(4)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=dtype)).sum() for t in out)
        loss = loss + (out.U @ out.coefficients).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, y)
        assert all(torch.isfinite(t).all() for t in out)
        assert torch.isfinite(grad).all(), (method, spectrum, grad)


def test_svd_method_tie_rule_is_finite_but_not_exact_on_ties() -> None:
    """The reference rule (zero F on ties) used by method "svd": finite, but off the exact
    gradient of U_k A at an in-block tie; the reason "gram" is the default."""
    y = planted(6, 8, [3.0, 2.0, 2.0, 1.0, 0.5]).requires_grad_()
    w = torch.randn(6, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = {}
    for method in METHODS:
        out = truncated_svd(y, 3, method)
        (grads[method],) = torch.autograd.grad(((out.U @ out.coefficients) * w).sum(), y)
    assert torch.isfinite(grads["svd"]).all()
    assert (grads["svd"] - grads["gram"]).abs().max() > 1e-3


def test_plain_torch_svd_is_not_finite_on_ties() -> None:
    """Why the stable backward exists: the reference for the previous test fails with torch's."""
    y = (2.0 * torch.eye(5, 7, dtype=torch.float64)).requires_grad_()  # exactly tied
    u, s, vh = torch.linalg.svd(y, full_matrices=False)
    (grad,) = torch.autograd.grad(u[:, :2].sum() + vh[:2].sum(), y)
    assert not torch.isfinite(grad).all()


@settings(max_examples=25, deadline=None)
@given(
    l_dim=st.integers(2, 12),
    b=st.integers(2, 12),
    k=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(METHODS),
    rank=st.integers(1, 12),
)
def test_properties(l_dim: int, b: int, k: int, seed: int, method: str, rank: int) -> None:
    """sum_i A[j,i]^2 = s_j^2; s sorted and >= 0; rank(U_k A) <= k; U orthonormal;
    U_k A is the best rank-k approximation (Eckart-Young: residual = trailing values)."""
    k = min(k, l_dim, b)
    g = torch.Generator().manual_seed(seed)
    y = (torch.randn(l_dim, rank, generator=g) @ torch.randn(rank, b, generator=g)).double()
    out = truncated_svd(y, k, method)
    a = out.coefficients
    torch.testing.assert_close(a.pow(2).sum(1), out.S.pow(2), atol=1e-9, rtol=1e-8)
    # the gram method resolves singular values down to ~sqrt(n * eps) of the largest
    tol = 1e-7 * float(torch.linalg.svdvals(y)[0]) + 1e-12
    assert (out.S[:-1] >= out.S[1:] - 1e-12).all() and (out.S >= 0).all()
    recon = out.U @ a
    assert torch.linalg.matrix_rank(recon) <= k
    full = torch.linalg.svdvals(y)
    torch.testing.assert_close(out.S, full[:k], atol=tol, rtol=1e-7)
    nonzero = out.S > 1e-6 * full[0]
    gram_u = out.U[:, nonzero].T @ out.U[:, nonzero]
    torch.testing.assert_close(gram_u, torch.eye(int(nonzero.sum()), dtype=gram_u.dtype),
                               atol=1e-7, rtol=0)
    residual = torch.linalg.matrix_norm(y - recon)
    torch.testing.assert_close(residual, full[k:].pow(2).sum().sqrt(), atol=10 * tol, rtol=1e-6)


def test_methods_agree_in_float32_with_signs() -> None:
    y = torch.randn(40, 30, generator=torch.Generator().manual_seed(5))
    a, b = truncated_svd(y, 5, "gram"), truncated_svd(y, 5, "svd")
    assert a.U.dtype == torch.float32
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4)
    # the sign convention: the largest-magnitude entry of each column of U is positive
    idx = a.U.abs().argmax(0)
    assert (a.U[idx, torch.arange(5)] > 0).all()


def test_batch_smaller_than_k_is_refused() -> None:
    with pytest.raises(ValueError, match=r"batch of 3 samples, fewer than k=4"):
        truncated_svd(torch.randn(10, 3), 4)
    with pytest.raises(ValueError, match="unknown SVD method"):
        truncated_svd(torch.randn(10, 6), 4, "qr")


def test_streaming_gram_basis_matches_direct_svd() -> None:
    """The inference basis accumulated batch by batch (uneven batches) spans the same
    subspace as the top-k left singular vectors of the concatenated latent matrix."""
    g = torch.Generator().manual_seed(6)
    l_dim, k = 12, 4
    scales = torch.tensor([9.0, 7.0, 5.0, 3.0] + [0.3] * 8)
    latents = (torch.randn(50, l_dim, generator=g) * scales) @ torch.linalg.qr(
        torch.randn(l_dim, l_dim, generator=g))[0]
    gram = torch.zeros(l_dim, l_dim, dtype=torch.float64)
    for part in torch.split(latents, [7, 20, 3, 20]):
        gram += part.double().T @ part.double()
    basis, sv = basis_from_gram(gram, k)

    u, s, _ = torch.linalg.svd(latents.double().T, full_matrices=False)
    torch.testing.assert_close(basis @ basis.T, u[:, :k] @ u[:, :k].T, atol=1e-10, rtol=0)
    torch.testing.assert_close(sv, s[:k], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(basis, u[:, :k] * column_signs(u[:, :k]), atol=1e-10, rtol=0)
    torch.testing.assert_close(basis.T @ basis, torch.eye(k, dtype=torch.float64))


def test_mixed_precision_keeps_the_decomposition_in_float64() -> None:
    y = torch.randn(20, 10, generator=torch.Generator().manual_seed(8)).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = truncated_svd(y.bfloat16(), 3)
        (out.U @ out.coefficients).sum().backward()
    assert out.U.dtype == torch.float32
    torch.testing.assert_close(out.U.T @ out.U, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.isfinite(y.grad).all()
