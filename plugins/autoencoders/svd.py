"""The SVD bottleneck of the rrae family: a truncated SVD with gradients through U, S and V.

Why a module of its own: the plain SVD backward divides by ``s_j^2 - s_i^2`` and by ``s``,
so it returns NaN/inf as soon as two singular values tie or one vanishes, which happens in
practice (duplicated images, dead latent units, a rank below ``min(L, B)``). The backward
implemented is the reference's *stable* one (docs/maths.md):

1. singular values below ``1e-11`` of the largest are set to zero before the derivative is
   built,
2. every ``1/(s_j^2 - s_i^2)`` whose denominator is zero (a tie) is replaced by 0,
3. ``1/s`` is "safe": 0 at 0.

With distinct, non-zero singular values both formulations here equal the exact gradient
(tested with ``torch.autograd.gradcheck`` in float64).

Two exact ways to compute the decomposition are provided (``method``):

``"svd"``
    LAPACK's thin SVD of the L×B matrix, in float64, with a hand-written stable backward
    (Townsend's formula for the thin SVD, including the two projection terms needed when
    the matrix is not square).
``"gram"``
    The symmetric eigendecomposition of the *small* Gram matrix (``Y Y^T`` when L <= B, else
    ``Y^T Y``) in float64, with a stable ``eigh`` backward; the other side's singular vectors
    come from one matrix product (``V = Y^T U S^-1`` or ``U = Y V S^-1``) that autograd
    differentiates. Squaring the matrix squares its condition number, which float64 absorbs
    for the ratios that matter here (top-k singular values of float32 latents): singular
    values are resolved down to ~``sqrt(n * eps64)`` ≈ 3e-7 of the largest, and smaller ones
    count as zero (rule 1 with that threshold instead of 1e-11, which float32 latents cannot
    reach anyway). About 2x faster than the float64 LAPACK SVD with its backward at the
    paper's sizes (``benchmarks/results/step_time.md``).

Ties: a tie makes the singular vectors non-unique, so only quantities the tie leaves well
defined have a gradient there, e.g. the rank-k reconstruction ``U_k A = U_k U_k^T Y`` when
the tie is inside the top k. ``"gram"`` gives the *exact* gradient of such quantities
(only one side's vectors come out of ``eigh``; S and the other side come from products with
Y that autograd differentiates, and the ``eigh`` tie terms cancel identically for them).
``"svd"``, with the reference's rule, returns finite values there but not the exact limit
(the dropped ``F_ij`` term multiplies a numerator that vanishes at the same rate as the
gap). ``tests/test_svd.py`` checks both statements.

``"auto"`` (the default of the models) is ``"gram"``, the fastest one in the benchmark that
passes the gradient tests.

Signs: singular vectors are only defined up to sign; every result here is flipped so that
the largest-magnitude entry of each column of U is positive (the ``svd_flip`` convention).
The choice is deterministic, identical for both methods, and keeps ``gradcheck`` meaningful.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

#: Singular values below this fraction of the largest count as zero (docs/maths.md, rule 1).
REL_ZERO = 1e-11

METHODS = ("auto", "gram", "svd")


class TruncatedSVD(NamedTuple):
    """``Y ≈ U diag(S) V^T`` truncated to rank k: U is L×k, S is (k,), V is B×k."""

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor

    @property
    def coefficients(self) -> torch.Tensor:
        """``A = S_k V_k^T`` (k×B): the bottleneck of the rrae family."""
        return self.S[:, None] * self.V.T


# ------------------------------------------------------------------------------ small helpers
def _safe_inverse(x: torch.Tensor) -> torch.Tensor:
    """``1/x`` with 0 where ``x == 0`` (docs/maths.md, rule 3); differentiable everywhere."""
    nonzero = x != 0
    return torch.where(nonzero, 1.0 / torch.where(nonzero, x, torch.ones_like(x)), 0.0)


def _tie_safe_reciprocal(d: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``1/d`` for the off-diagonal gaps, 0 on the diagonal and wherever ``d`` is zero up to
    rounding (``|d| <= eps * scale``, ``scale`` ~ largest value times the matrix size, the
    accuracy of LAPACK's values): the tie rule (docs/maths.md, rule 2)."""
    tol = torch.finfo(d.dtype).eps * scale
    keep = d.abs() > tol
    keep.fill_diagonal_(False)
    return torch.where(keep, 1.0 / torch.where(keep, d, torch.ones_like(d)), 0.0)


def _zero_small(s: torch.Tensor) -> torch.Tensor:
    """Singular values below ``REL_ZERO`` of the largest, set to zero (docs/maths.md, rule 1)."""
    if s.numel() == 0:
        return s
    return torch.where(s > REL_ZERO * s.max(), s, torch.zeros_like(s))


def column_signs(u: torch.Tensor) -> torch.Tensor:
    """±1 per column so that each column's largest-magnitude entry becomes positive."""
    idx = u.abs().argmax(dim=0)
    signs = torch.sign(u.gather(0, idx[None, :])[0])
    return torch.where(signs == 0, torch.ones_like(signs), signs)


# ------------------------------------------------------------------ method "svd": thin SVD
class _StableSVD(torch.autograd.Function):
    """Thin SVD (float64) with the stable backward of docs/maths.md (Townsend's formula).

    ``Y`` is m×n, r = min(m, n); returns U (m×r), S (r,), V (n×r), S sorted descending and
    signs fixed by :func:`column_signs`. The backward receives gradients for all r columns
    (zeros where the caller truncated).
    """

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        u, s, vh = torch.linalg.svd(y, full_matrices=False)
        v = vh.mT
        signs = column_signs(u)
        u, v = u * signs, v * signs
        ctx.save_for_backward(u, s, v)
        return u, s, v

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, g_u: torch.Tensor | None, g_s: torch.Tensor | None, g_v: torch.Tensor | None
    ) -> torch.Tensor:
        u, s, v = ctx.saved_tensors
        m, n, r = u.shape[0], v.shape[0], s.shape[0]
        g_u = torch.zeros_like(u) if g_u is None else g_u
        g_s = torch.zeros_like(s) if g_s is None else g_s
        g_v = torch.zeros_like(v) if g_v is None else g_v
        s = _zero_small(s)
        s2 = s * s
        scale = (s2.max() if r else s2.sum()) * max(m, n)
        f = _tie_safe_reciprocal(s2[None, :] - s2[:, None], scale)  # F_ij = 1/(s_j^2 - s_i^2)
        s_inv = _safe_inverse(s)
        ut_gu = u.mT @ g_u
        vt_gv = v.mT @ g_v
        j = f * (ut_gu - ut_gu.mT)
        k = f * (vt_gv - vt_gv.mT)
        inner = j * s[None, :] + torch.diag(g_s) + s[:, None] * k
        g_y = u @ inner @ v.mT
        if m > r:  # (I - U U^T) gU S^-1 V^T: U does not span R^m
            g_y = g_y + ((g_u - u @ ut_gu) * s_inv[None, :]) @ v.mT
        if n > r:  # U S^-1 gV^T (I - V V^T): V does not span R^n
            g_y = g_y + (u * s_inv[None, :]) @ (g_v - v @ vt_gv).mT
        return g_y


# --------------------------------------------------------------- method "gram": small eigh
class _StableEigh(torch.autograd.Function):
    """Symmetric eigendecomposition: all eigenvalues (descending) and the top-``k``
    eigenvectors, with a tie-safe backward.

    The exact backward is ``W (F ∘ (W^T gW) + diag(g_lambda)) W^T`` with
    ``F_ij = 1/(lambda_j - lambda_i)``; ties get ``F_ij = 0`` (docs/maths.md, rule 2). For a Gram matrix
    ``lambda = s^2``, so these are the same gaps as in the SVD backward. Only the first k
    columns of ``gW`` can be non-zero, so the product is formed with those columns alone
    (L×L×k instead of L^3 work, the same numbers).
    """

    @staticmethod
    def forward(ctx: Any, g: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        lam, w = torch.linalg.eigh(g)
        lam, w = lam.flip(0), w.flip(1)
        ctx.save_for_backward(lam, w)
        ctx.k = k
        return lam, w[:, :k]

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, g_lam: torch.Tensor | None, g_wk: torch.Tensor | None
    ) -> tuple[torch.Tensor, None]:
        lam, w = ctx.saved_tensors
        k = ctx.k
        n = lam.shape[0]
        inner = torch.zeros((n, k), dtype=lam.dtype, device=lam.device)  # columns j < k
        if g_wk is not None:
            f = _tie_safe_reciprocal(lam[None, :] - lam[:, None], lam.abs().max() * n)
            inner = f[:, :k] * (w.mT @ g_wk)
        g_g = w @ inner @ w[:, :k].mT
        if g_lam is not None:  # usually non-zero only for the top k: use those columns
            nonzero = torch.nonzero(g_lam).flatten()
            m = int(nonzero.max()) + 1 if nonzero.numel() else 0
            g_g = g_g + (w[:, :m] * g_lam[None, :m]) @ w[:, :m].mT
        return 0.5 * (g_g + g_g.mT), None


def _safe_sqrt_eigenvalues(lam: torch.Tensor) -> torch.Tensor:
    """Singular values from Gram eigenvalues: ``sqrt(lambda)``, with eigenvalues at the
    rounding level of the Gram matrix (``<= n * eps * lambda_max``, which covers the
    ``1e-11`` rule of docs/maths.md and what float64 can resolve) set to exactly 0, with zero gradient
    instead of the infinite slope of sqrt at 0."""
    if lam.numel() == 0:
        return lam
    tol = torch.finfo(lam.dtype).eps * lam.shape[0] * lam.detach().abs().max()
    tol = torch.clamp(tol, min=(REL_ZERO**2) * lam.detach().abs().max())
    keep = lam > tol
    return torch.where(keep, torch.sqrt(torch.where(keep, lam, torch.ones_like(lam))), 0.0)


def _gram_truncated(y64: torch.Tensor, k: int) -> TruncatedSVD:
    m, n = y64.shape
    if m <= n:  # L <= B: eigenvectors of Y Y^T are U
        lam, u = _StableEigh.apply(y64 @ y64.mT, k)
        s = _safe_sqrt_eigenvalues(lam)[:k]
        v = (y64.mT @ u) * _safe_inverse(s)[None, :]
    else:  # B < L: eigenvectors of Y^T Y are V
        lam, v = _StableEigh.apply(y64.mT @ y64, k)
        s = _safe_sqrt_eigenvalues(lam)[:k]
        u = (y64 @ v) * _safe_inverse(s)[None, :]
    return TruncatedSVD(u, s, v)


def _svd_truncated(y64: torch.Tensor, k: int) -> TruncatedSVD:
    u, s, v = _StableSVD.apply(y64)
    return TruncatedSVD(u[:, :k], s[:k], v[:, :k])


def truncated_svd(y: torch.Tensor, k: int, method: str = "auto") -> TruncatedSVD:
    """Rank-k truncated SVD of the L×B matrix ``y`` (one column per sample), differentiable.

    The decomposition runs in float64 whatever the input dtype (and with autocast off); the
    results are cast back to ``y.dtype`` (float32 for half-precision inputs). Raises ``ValueError`` when ``y`` has fewer than ``k`` columns (or rows): a
    truncated SVD of rank k needs them, and returning fewer directions would silently change
    the model (docs/maths.md).
    """
    if y.dim() != 2:
        raise ValueError(f"truncated_svd expects an L×B matrix, got shape {tuple(y.shape)}")
    rows, cols = y.shape
    if cols < k:
        raise ValueError(
            f"the SVD bottleneck got a batch of {cols} samples, fewer than k={k}: a rank-{k} "
            f"truncated SVD needs at least k columns. Use a (global) batch size >= {k} and "
            f"drop or merge the last partial batch of an epoch."
        )
    if rows < k:
        raise ValueError(f"latent dimension L={rows} is smaller than the bottleneck k={k}")
    if method not in METHODS:
        raise ValueError(f"unknown SVD method {method!r}; choose one of {', '.join(METHODS)}")
    # float64 throughout, also under mixed precision (autocast would otherwise lower the
    # products); half-precision inputs get float32 results (a bf16 basis is not orthonormal).
    out_dtype = y.dtype if y.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(device_type=y.device.type, enabled=False):
        y64 = y.to(torch.float64)
        out = _svd_truncated(y64, k) if method == "svd" else _gram_truncated(y64, k)
        u, s, v = out
        if method != "svd":  # _StableSVD already fixed the signs of all r columns
            signs = column_signs(u.detach())
            u, v = u * signs, v * signs
    return TruncatedSVD(u.to(out_dtype), s.to(out_dtype), v.to(out_dtype))


# ------------------------------------------------------------------------- inference basis
def basis_from_gram(gram: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inference basis from ``C = sum_b Y_b Y_b^T`` (L×L, float64, summed over the whole
    training set and over processes): its top-k eigenvectors (L×k) and the singular values
    ``sqrt(eigenvalue)`` of the full training-set latent matrix.

    Why the Gram matrix: its eigenvectors are exactly the left singular vectors of the
    concatenated L×N latent matrix of the whole training set, but it can be summed batch by
    batch and process by process in O(L^2) memory, never holding the N latents. Signs follow
    :func:`column_signs`.
    """
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"the Gram matrix must be square, got shape {tuple(gram.shape)}")
    if gram.shape[0] < k:
        raise ValueError(f"latent dimension L={gram.shape[0]} is smaller than k={k}")
    gram = gram.to(torch.float64)
    lam, w = torch.linalg.eigh(0.5 * (gram + gram.mT))
    lam, w = lam.flip(0)[:k], w.flip(1)[:, :k]
    w = w * column_signs(w)
    return w, lam.clamp(min=0).sqrt()
