"""How a benchmark claim is judged: an effect size with a 95 % confidence interval over seeds,
and a three-way verdict.

Why: comparing means of 3–5 seeds ("7.16 ± 1.62 vs 16.14 ± 16.50 → supported") mistakes
noise for evidence. A claim "A is lower than B" is judged on the difference of means A − B:

* runs of both models share every seed (the suites' case: same seed, same data order and
  initialisation stream): a paired t interval over the per-seed differences;
* otherwise, or when only mean ± std are recorded: Welch's t interval.

A claim "A spreads wider than B" is judged on the variance ratio s_A² / s_B² with the F
interval (normal runs assumed; with 3–5 seeds only a large ratio is conclusive).

Student's t rather than a bootstrap over seeds: with n ≤ 5 a percentile bootstrap resamples
from at most 5 values and its interval is too narrow (it under-covers); the t interval is
exact for normal noise and the usual choice at this n.

Verdicts: **supported** when the interval lies entirely on the claimed side (below 0, above
1), **not supported** when it lies entirely on the other side (the data contradict the
claim), **inconclusive** when it contains the null value; with several rivals, supported only
when every comparison is, not supported when any is.
"""

from __future__ import annotations

import math
from statistics import mean, stdev
from typing import Any

#: two-sided level of every interval
CONFIDENCE = 0.95


def _per_seed(row: dict[str, Any]) -> dict[int, float]:
    return {int(s): float(v) for s, v in row.get("values") or []}


def mean_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a.mean − b.mean`` with its CONFIDENCE interval. ``a``/``b``: rows with ``mean``,
    ``std``, ``n`` and, when recorded, ``values`` ([seed, value] per run)."""
    from scipy import stats

    va, vb = _per_seed(a), _per_seed(b)
    q = 1 - (1 - CONFIDENCE) / 2
    if len(va) >= 2 and set(va) == set(vb):
        diffs = [va[s] - vb[s] for s in sorted(va)]
        n, est = len(diffs), mean(diffs)
        half = stats.t.ppf(q, n - 1) * stdev(diffs) / math.sqrt(n)
        method = f"paired t over {n} shared seeds"
    else:
        (ma, sa, na), (mb, sb, nb) = ((r["mean"], r["std"], r["n"]) for r in (a, b))
        est = ma - mb
        va_, vb_ = sa**2 / na, sb**2 / nb
        if va_ + vb_ == 0:
            half = 0.0
        else:
            df = (va_ + vb_) ** 2 / (va_**2 / (na - 1) + vb_**2 / (nb - 1))
            half = stats.t.ppf(q, df) * math.sqrt(va_ + vb_)
        method = ("Welch t" if va or vb else "Welch t from mean ± std") + f", n {na} and {nb}"
    return {"estimate": est, "low": est - half, "high": est + half, "method": method}


def variance_ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``s_a² / s_b²`` with its CONFIDENCE interval (F distribution, n − 1 degrees of freedom
    each)."""
    from scipy import stats

    (sa, na), (sb, nb) = ((r["std"], r["n"]) for r in (a, b))
    method = f"F test, {na - 1} and {nb - 1} df"
    if sb == 0:
        ratio = math.inf if sa > 0 else 1.0
        low, high = (ratio, ratio) if sa > 0 else (0.0, math.inf)
        return {"estimate": ratio, "low": low, "high": high, "method": method}
    ratio = sa**2 / sb**2
    q = 1 - (1 - CONFIDENCE) / 2
    return {"estimate": ratio, "low": ratio / stats.f.ppf(q, na - 1, nb - 1),
            "high": ratio / stats.f.ppf(1 - q, na - 1, nb - 1), "method": method}  # fmt: skip


def verdict(test: str, comparisons: list[dict[str, Any]]) -> str:
    """supported / not supported / inconclusive (module docstring) of ``test`` ("lower":
    differences below 0; "wider": variance ratios above 1)."""
    if test == "wider":
        claimed = [c["low"] > 1 for c in comparisons]
        against = [c["high"] < 1 for c in comparisons]
    else:
        claimed = [c["high"] < 0 for c in comparisons]
        against = [c["low"] > 0 for c in comparisons]
    if any(against):
        return "not supported"
    return "supported" if all(claimed) else "inconclusive"


def describe(test: str, model: str, rival: str, c: dict[str, Any]) -> str:
    """One comparison in words, e.g. ``vrrae − vae: −9.6 [95 % CI −30.1, 10.8] (paired t…)``."""
    what = f"variance ratio {model}/{rival}" if test == "wider" else f"{model} − {rival}"
    return (f"{what}: {c['estimate']:.3g} [{CONFIDENCE:.0%} CI {c['low']:.3g}, "
            f"{c['high']:.3g}] ({c['method']})")
