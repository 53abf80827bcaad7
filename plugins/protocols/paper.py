"""The paper's evaluation protocols (section 3) as components of the harness.

* **reconstruction** — rec error (docs/maths.md) on the test split,
  ``100 * ||X_hat - X||_F / ||X||_F`` over the *whole* split, accumulated as two float64
  sums (not a mean of per-batch ratios; that one goes in ``details`` as
  ``rec_error_percent_batch_mean``, for comparison only), with ``model.reconstruct`` (eval
  mode: the stored basis for the rrae family, z = mu for variational models).
* **codes** — the (N, k) bottleneck codes of the training set (``model.encode``), for
  metrics taking codes (e.g. ``collapse``). Shared with random generation: the evaluation
  context encodes the training set once.
* **random-generation** — ``sampler = "gmm"`` (the default, the paper's): fit a scikit-learn
  ``GaussianMixture`` (full covariance, ``random_state=seed``) on the training codes, sample
  ``n_samples`` codes, shuffle them (sklearn returns them grouped by component) and decode;
  ``"gaussian"``: one full-covariance Gaussian fitted on the codes; ``"prior"``: N(0, I) draws,
  for models with a prior only (``model.has_prior``), refused before training otherwise.
* **interpolation** — ``n_pairs`` seeded random pairs of distinct training images, linear
  interpolation of their codes at ``t = i / (n_interp + 1)``, ``i = 1..n_interp`` (interior
  points only, endpoints excluded), decode; the metrics score these. Its picture is one
  strip per pair: input A, D(E(A)), the interior points, D(E(B)), input B.

Each protocol's ``Config`` is its ``eval.<name>`` section; its ``stamp`` holds everything
that defines its numbers, so two numbers are comparable exactly when their stamps agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.api import (
    EvalContext,
    EvalSizes,
    GridLabels,
    ProtocolOutput,
    ValueDisplay,
    model_capabilities,
)
from harness.errors import ConfigError, HarnessError

SAMPLER = "sklearn.mixture.GaussianMixture(full)"
N_PREVIEW = 64

__all__ = [
    "SAMPLERS", "Codes", "Interpolation", "PriorSamples", "RandomGeneration", "Reconstruction",
    "ReconstructionSamples", "fit_gmm",
    "interpolate_codes", "interpolation_pairs", "reconstruction_error", "sample_codes",
    "sample_gaussian", "sample_prior", "gmm_fit_report", "GMM_MAX_ITER", "REFERENCES",
    "SAMPLER_TITLES", "stamped_sampler",
]


#: what the metrics compare a protocol's images with (``eval.<protocol>.reference``): the
#: training split (the paper, A.4: "between the feature vectors of the training data and
#: those of the generated images"), the held-out test split, or both, which also records the
#: train-vs-test gap of every value (``<value>_test``, ``<value>_gap`` = test − train)
REFERENCES = ("train", "test", "both")


def _check_reference(section: str, reference: str) -> None:
    if reference not in REFERENCES:
        raise ConfigError(f"eval.{section}.reference must be one of {', '.join(REFERENCES)} "
                          f"(train: the paper's), got {reference!r}")


def _positive(section: str, **values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"eval.{section}.{key} must be a positive integer, got {value}")


# ----------------------------------------------------------------------------- reconstruction
@torch.no_grad()
def reconstruction_error(ctx: EvalContext, split: str = "test") -> dict[str, float]:
    """rec over a whole split: ``100 * sqrt(sum ||X_hat - X||^2 / sum ||X||^2)``.

    Also returns the mean of per-batch rec (batches of ``ctx.batch_size``), which depends on
    the batch size and is given only for comparison with code that reports it.
    """
    err_sq = ref_sq = 0.0
    batch_ratios: list[float] = []
    n = 0
    for x in ctx.batches(ctx.split(split)):
        x_hat = ctx.model.reconstruct(x.to(ctx.device)).detach().to("cpu", torch.float64)
        x64 = x.to(torch.float64)
        e, r = float(((x_hat - x64) ** 2).sum()), float((x64**2).sum())
        err_sq, ref_sq = err_sq + e, ref_sq + r
        batch_ratios.append(100.0 * (e / r) ** 0.5 if r > 0 else float("nan"))
        n += int(x.shape[0])
    if n == 0:
        raise HarnessError(f"the {split} split is empty: nothing to reconstruct")
    if ref_sq == 0.0:
        raise HarnessError(f"the {split} images are all zero: the relative error is undefined")
    return {"rec_error_percent": 100.0 * (err_sq / ref_sq) ** 0.5,
            "rec_error_percent_batch_mean": float(np.mean(batch_ratios)), "n_images": float(n)}


@dataclass
class ReconstructionConfig:
    """``eval.reconstruction``: no options; the split is the test split."""


class Reconstruction:
    kind = "reconstructions"
    version = 1
    needs = ("reconstruct",)
    Config = ReconstructionConfig
    title = "Reconstruction (test split)"
    display = {"rec_error_percent": ValueDisplay(
        "Reconstruction error", "%", False,
        "100 * ||X_hat - X|| / ||X|| over the whole test split")}

    def __init__(self, config: ReconstructionConfig | None = None) -> None:
        self.config = config or ReconstructionConfig()

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        rec = reconstruction_error(ctx, "test")
        test = ctx.split("test")
        x = next(iter(ctx.batches(test, 32)))
        x_hat = ctx.reconstruct(x)
        # originals and reconstructions in alternating rows of 8
        preview = torch.cat([t for i in range(0, x.shape[0], 8)
                             for t in (x[i : i + 8], x_hat[i : i + 8])])
        data = torch.cat([ctx.reconstruct(b) for b in ctx.batches(test)]) if ctx.needs_data \
            else None
        ctx.log(f"reconstruction: rec {rec['rec_error_percent']:.3f}%")
        rows = preview.shape[0] // 8 + (preview.shape[0] % 8 > 0)
        labels = GridLabels(
            title=f"Reconstruction: test images and their reconstructions "
                  f"(rec {rec['rec_error_percent']:.2f} %)",
            row_labels=["input" if r % 2 == 0 else "output" for r in range(rows)],
            marked_rows=list(range(0, rows, 2)))
        return ProtocolOutput(
            data=data, split="test", preview=preview, preview_nrow=8, preview_labels=labels,
            values={"rec_error_percent": rec["rec_error_percent"]},
            stamp={"split": "test", "n_images": int(rec["n_images"]),
                   "method": "model.reconstruct",
                   "formula": "100*||X_hat-X||_F/||X||_F over the whole split"},
            # for comparison only: depends on the batch size (eval.batch_size)
            details={"rec_error_percent_batch_mean": rec["rec_error_percent_batch_mean"],
                     "batch_size": ctx.batch_size},
        )


# ------------------------------------------------------------------------------------ codes
@dataclass
class CodesConfig:
    """``eval.codes``: no options; the codes of the whole training set."""


class Codes:
    kind = "codes"
    version = 1
    needs = ("encoder",)
    Config = CodesConfig
    title = "Bottleneck codes (training set)"

    def __init__(self, config: CodesConfig | None = None) -> None:
        self.config = config or CodesConfig()

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        codes = ctx.encode_split("train")
        ctx.log(f"encoded {codes.shape[0]} training images to k={codes.shape[1]}")
        return ProtocolOutput(data=codes, split="train", stamp={
            "codes": "model.encode(train)", "n_codes": int(codes.shape[0]),
            "k": int(codes.shape[1])})


# -------------------------------------------------------------------------- random generation
#: ``eval.random-generation.sampler`` -> what its stamp says it is
SAMPLERS = {
    "gmm": SAMPLER,
    "gaussian": "one full-covariance Gaussian (mean, np.cov) fitted on the codes",
    "prior": "the model's prior N(0, I)",
    "model": "the model's own sampler, model.sample(n, generator)",
}

#: what each sampler needs of the model (:data:`harness.api.CAPABILITIES`)
SAMPLER_NEEDS = {"gmm": ("encoder",), "gaussian": ("encoder",), "prior": ("prior",),
                 "model": ("sample",)}

#: random generation's title for the samples of each sampler: results say which one made them
SAMPLER_TITLES = {"gmm": "Random generation (GMM on the codes)",
                  "gaussian": "Random generation (one Gaussian fitted to the codes)",
                  "prior": "Random generation (decoded N(0, I) prior samples)",
                  "model": "Random generation (the model's own sampler)"}


def stamped_sampler(stamp: dict[str, Any] | None) -> str | None:
    """The sampler (a :data:`SAMPLERS` key) a result's stamp records, or None."""
    recorded = (stamp or {}).get("sampler")
    return next((name for name, words in SAMPLERS.items() if words == recorded), None)


#: scikit-learn's default EM cap, kept as the default so committed numbers reproduce; pythae
#: fits its mixture with 2000 (``eval.random-generation.gmm_max_iter``)
GMM_MAX_ITER = 100


def fit_gmm(codes: torch.Tensor, n_components: int, seed: int,
            max_iter: int = GMM_MAX_ITER) -> Any:  # fmt: skip
    """scikit-learn GaussianMixture (full covariance) fitted on the codes, seeded, at most
    ``max_iter`` EM iterations. Refuses more components than codes (sklearn would fail with
    a less helpful message)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    if n_components > codes.shape[0]:
        raise ConfigError(f"eval.random-generation.gmm_components={n_components} is more than "
                          f"the {codes.shape[0]} training codes; lower it")
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed,
                          max_iter=max_iter)  # fmt: skip
    with warnings.catch_warnings():  # recorded by gmm_fit_report instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(codes.double().numpy())
    return gmm


def gmm_fit_report(gmm: Any) -> dict[str, Any]:
    """Whether EM converged (scikit-learn's tolerance on the lower bound), after how many
    iterations, and the final per-code log-likelihood lower bound."""
    return {"gmm_converged": bool(gmm.converged_), "gmm_n_iter": int(gmm.n_iter_),
            "gmm_max_iter": int(gmm.max_iter),
            "gmm_log_likelihood": float(gmm.lower_bound_)}  # fmt: skip


def sample_codes(codes: torch.Tensor, n_samples: int, n_components: int, seed: int,
                 max_iter: int = GMM_MAX_ITER,
                 report: dict[str, Any] | None = None) -> torch.Tensor:  # fmt: skip
    """Fit the GMM on ``codes`` and draw ``n_samples`` codes, shuffled with ``seed``;
    ``report`` (a dict) receives :func:`gmm_fit_report`."""
    gmm = fit_gmm(codes, n_components, seed, max_iter)
    if report is not None:
        report.update(gmm_fit_report(gmm))
    samples, _ = gmm.sample(n_samples)
    order = np.random.default_rng(seed).permutation(n_samples)
    return torch.from_numpy(samples[order]).float()


def sample_gaussian(codes: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """Draw from one Gaussian with the codes' mean and (unbiased) full covariance: the
    simplest ex-post density of the RAE paper. Needs two codes at least."""
    if codes.shape[0] < 2:
        raise HarnessError("the gaussian sampler needs at least 2 training codes")
    x = codes.double().numpy()
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    rng = np.random.default_rng(seed)
    samples = rng.multivariate_normal(x.mean(axis=0), cov, size=n_samples, method="eigh")
    return torch.from_numpy(samples).float()


def sample_prior(k: int, n_samples: int, seed: int) -> torch.Tensor:
    """``n_samples`` seeded draws of N(0, I_k)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n_samples, k), generator=gen)


@dataclass
class RandomGenerationConfig:
    """``eval.random-generation``: samples (the paper: 1250), the sampler (``gmm``: the
    paper's Gaussian mixture on the codes; ``gaussian``: one full-covariance Gaussian on the
    codes; ``prior``: N(0, I) codes decoded, or the model's own sampler for a model without
    an encoder; ``model``: the model's own ``sample``; ``auto``, the default: ``gmm`` for a
    model with an encoder, ``model`` otherwise) and the mixture size (``gmm`` only)."""

    n_samples: int = 1250
    gmm_components: int = 10
    sampler: str = "auto"
    #: EM iterations at most (scikit-learn's 100; pythae uses 2000). Whether the fit
    #: converged, its iterations and log-likelihood are in the protocol's details
    gmm_max_iter: int = GMM_MAX_ITER
    #: the split the metrics compare the samples with (``REFERENCES``; stamped)
    reference: str = "train"

    def __post_init__(self) -> None:
        _positive("random-generation", n_samples=self.n_samples,
                  gmm_components=self.gmm_components, gmm_max_iter=self.gmm_max_iter)
        _check_reference("random-generation", self.reference)
        if self.sampler not in (*SAMPLERS, "auto"):
            raise ConfigError(f"eval.random-generation.sampler must be one of "
                              f"{', '.join(SAMPLERS)}, auto; got {self.sampler!r}")


class RandomGeneration:
    kind = "samples"
    version = 1
    Config = RandomGenerationConfig
    title = SAMPLER_TITLES["gmm"]

    def __init__(self, config: RandomGenerationConfig | None = None) -> None:
        self.config = config or RandomGenerationConfig()

    @classmethod
    def title_for(cls, stamp: dict[str, Any]) -> str:
        """The title of results with this stamp: it names the sampler that made the samples
        (a dcgan's are its own sampler's, not a GMM's on codes it does not have)."""
        return SAMPLER_TITLES.get(stamped_sampler(stamp) or "", cls.title)

    def resolved_sampler(self, capabilities: Any) -> str:
        """The sampler that runs for a model with these capabilities: ``auto`` is ``gmm`` for a
        model with an encoder and the model's own sampler otherwise; ``prior`` on a model that
        samples but has no encoder is its own sampler (which draws from its prior)."""
        caps, sampler = set(capabilities), self.config.sampler
        if sampler == "auto":
            return "gmm" if "encoder" in caps else "model"
        if sampler == "prior" and "encoder" not in caps and "sample" in caps:
            return "model"
        return sampler

    def needs(self, capabilities: Any) -> tuple[str, ...]:
        """What the sampler needs of this model (see :meth:`resolved_sampler`)."""
        return SAMPLER_NEEDS[self.resolved_sampler(capabilities)]

    def check_model(self, model: Any) -> None:
        """Refuse the ``prior`` sampler for an autoencoder without a prior (its codes were
        never pulled towards N(0, I), so prior draws say nothing about it); runs before
        training. (Another sampler the model cannot serve does not apply: the host records
        that without running the protocol.)"""
        caps = model_capabilities(model)
        if self.resolved_sampler(caps) == "prior" and "prior" not in caps:
            name = getattr(model, "name", type(model).__name__)
            raise ConfigError(
                f"eval.random-generation.sampler=prior: model '{name}' has no prior (its "
                "training does not pull the codes towards N(0, I)); use sampler=gmm or "
                "sampler=gaussian, which fit a density to the training codes")

    def check_sizes(self, sizes: EvalSizes) -> None:
        """Before training: the samples fit the memory, and the mixture has at most one
        component per training code (its responsibilities, codes x components in float64,
        fit the memory too)."""
        cfg, key = self.config, "eval.random-generation"
        sizes.images(f"{key}.n_samples", cfg.n_samples, cfg.n_samples, "the decoded samples")
        sizes.produces(f"{key}.n_samples", cfg.n_samples)
        sizes.at_most(f"{key}.gmm_components", cfg.gmm_components, sizes.n_train,
                      f"the mixture is fitted on the {sizes.n_train} training codes, at least "
                      "one per component")
        sizes.memory(f"{key}.gmm_components", cfg.gmm_components,
                     8 * sizes.n_train * cfg.gmm_components,
                     f"the mixture's responsibilities ({sizes.n_train} codes x "
                     f"{cfg.gmm_components} components)")

    def sample(self, ctx: EvalContext, sampler: str,
               report: dict[str, Any] | None = None) -> torch.Tensor:
        """The codes to decode, from ``sampler`` (not ``model``: that one gives images;
        ``report``: the GMM's fit)."""
        cfg = self.config
        if sampler == "prior":
            return sample_prior(int(ctx.model.bottleneck_dim), cfg.n_samples, ctx.seed)
        codes = ctx.encode_split("train")
        if sampler == "gaussian":
            return sample_gaussian(codes, cfg.n_samples, ctx.seed)
        return sample_codes(codes, cfg.n_samples, cfg.gmm_components, ctx.seed,
                            cfg.gmm_max_iter, report)

    def stamp(self, sampler: str | None = None) -> dict[str, Any]:
        """What defines the samples of ``sampler`` (default: the configured one, ``auto`` read
        as ``gmm``); the sampler is part of it, so two samplers never share a report column
        (the ``gmm`` stamp is the one results had before the option)."""
        cfg = self.config
        sampler = sampler or ("gmm" if cfg.sampler == "auto" else cfg.sampler)
        out: dict[str, Any] = {"n_samples": cfg.n_samples, "sampler": SAMPLERS[sampler],
                               "reference": cfg.reference}
        if sampler == "gmm":
            out["gmm_components"] = cfg.gmm_components
            if cfg.gmm_max_iter != GMM_MAX_ITER:  # the default's stamp is the one before it
                out["gmm_max_iter"] = cfg.gmm_max_iter
        if sampler in ("gmm", "gaussian"):
            out["codes"] = "model.encode(train)"
        return out

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        self.check_model(ctx.model)
        cfg = self.config
        sampler = self.resolved_sampler(ctx.capabilities)
        fit: dict[str, Any] = {}
        images = ctx.sample(cfg.n_samples) if sampler == "model" else \
            ctx.decode(self.sample(ctx, sampler, fit))
        ctx.log(f"random-generation: {images.shape[0]} images ({sampler})")
        if fit and not fit["gmm_converged"]:
            ctx.log(f"random-generation: the GMM did not converge in {fit['gmm_n_iter']} EM "
                    "iterations; raise eval.random-generation.gmm_max_iter (pythae: 2000)")
        how = {"gmm": f"decoded GMM samples ({cfg.gmm_components} components)",
               "gaussian": "decoded samples of one Gaussian fitted to the codes",
               "prior": "decoded samples of the prior N(0, I)",
               "model": "samples of the model's own sampler"}[sampler]
        labels = GridLabels(title=f"Random generation: the first {min(N_PREVIEW, len(images))}"
                                  f" of {len(images)} {how}")
        return ProtocolOutput(data=images, preview=images[:N_PREVIEW], preview_nrow=8,
                              preview_labels=labels, stamp=self.stamp(sampler), details=fit)


# ------------------------------------------------------------------------------ interpolation
def interpolation_pairs(n: int, n_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_pairs`` seeded random pairs ``(a, b)`` of distinct indices in ``range(n)``."""
    if n < 2:
        raise HarnessError(f"interpolation needs at least 2 training images, got {n}")
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (n_pairs,), generator=gen)
    b = torch.randint(0, n - 1, (n_pairs,), generator=gen)
    b = b + (b >= a).long()  # uniform over the other n - 1 indices
    return a, b


def interpolate_codes(za: torch.Tensor, zb: torch.Tensor, n_interp: int) -> torch.Tensor:
    """Interior points ``(1 - t) za + t zb``, ``t = i / (n_interp + 1)``, pair-major order:
    rows ``p * n_interp + (i - 1)``."""
    t = torch.arange(1, n_interp + 1, dtype=za.dtype) / (n_interp + 1)
    points = za[:, None, :] * (1 - t)[None, :, None] + zb[:, None, :] * t[None, :, None]
    return points.reshape(-1, za.shape[1])


@dataclass
class InterpolationConfig:
    """``eval.interpolation``: pairs of training images, interior points per pair, and the
    split the metrics compare them with (``REFERENCES``; stamped)."""

    n_pairs: int = 250
    n_interp: int = 5
    reference: str = "train"

    def __post_init__(self) -> None:
        _positive("interpolation", n_pairs=self.n_pairs, n_interp=self.n_interp)
        _check_reference("interpolation", self.reference)


class Interpolation:
    kind = "samples"
    version = 1
    needs = ("encoder",)
    Config = InterpolationConfig
    title = "Interpolation between training images"

    def __init__(self, config: InterpolationConfig | None = None) -> None:
        self.config = config or InterpolationConfig()

    def check_sizes(self, sizes: EvalSizes) -> None:
        """Before training: the interpolated images (and the pairs' ends) fit the memory."""
        cfg, key = self.config, "eval.interpolation"
        n_images = cfg.n_pairs * (cfg.n_interp + 2)
        name = "n_interp" if cfg.n_interp >= cfg.n_pairs else "n_pairs"  # the larger factor
        sizes.images(f"{key}.{name}", getattr(cfg, name), n_images,
                     f"{cfg.n_pairs} pairs x ({cfg.n_interp} points + 2 ends)")
        sizes.produces(f"{key}.n_pairs x n_interp", cfg.n_pairs * cfg.n_interp)

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        cfg = self.config
        train = ctx.split("train")
        a, b = interpolation_pairs(len(train), cfg.n_pairs, ctx.seed)  # type: ignore[arg-type]
        codes = ctx.encode(ctx.images(train, torch.cat([a, b]).tolist()))
        za, zb = codes[: cfg.n_pairs], codes[cfg.n_pairs :]
        images = ctx.decode(interpolate_codes(za, zb, cfg.n_interp))
        ctx.log(f"interpolation: {images.shape[0]} images")
        preview, labels = self.strips(ctx, train, (a, b), (za, zb), images)
        return ProtocolOutput(
            data=images, preview=preview, preview_nrow=cfg.n_interp + 4, preview_labels=labels,
            stamp={
                "n_pairs": cfg.n_pairs, "n_interp": cfg.n_interp,
                "t": "i/(n_interp+1), i=1..n_interp (interior points)",
                "pairs": "seeded random pairs of distinct training images",
                "reference": cfg.reference})

    def strips(self, ctx: EvalContext, train: Any, pairs: tuple[torch.Tensor, torch.Tensor],
               codes: tuple[torch.Tensor, torch.Tensor],
               images: torch.Tensor) -> tuple[torch.Tensor, GridLabels]:  # fmt: skip
        """One strip per pair, from one input to the other (the paper's figure 4): input A,
        its decoding D(E(A)), the decoded interior points, D(E(B)), input B. The decoded
        endpoints show what of each input the model keeps, so the interpolants are judged
        against them, not against the inputs; the inputs are framed."""
        cfg = self.config
        rows = min(cfg.n_pairs, max(1, N_PREVIEW // (cfg.n_interp + 4)))
        (a, b), (za, zb) = pairs, codes
        inputs = ctx.images(train, torch.cat([a[:rows], b[:rows]]).tolist()).to(images)
        decoded = ctx.decode(torch.cat([za[:rows], zb[:rows]])).to(images)
        inner = images[: rows * cfg.n_interp].reshape(rows, cfg.n_interp, *images.shape[1:])
        preview = torch.cat([inputs[:rows, None], decoded[:rows, None], inner,
                             decoded[rows:, None], inputs[rows:, None]], dim=1).flatten(0, 1)
        n = cfg.n_interp + 1
        labels = GridLabels(
            title=f"Interpolation: input A, D(E(A)), decoded codes at t = i/{n}, D(E(B)), "
                  "input B",
            col_labels=["input A", "D(E(A))", *[f"t={i}/{n}" for i in range(1, n)], "D(E(B))",
                        "input B"],
            row_labels=[f"pair {r + 1}" for r in range(rows)], marked_cols=[0, n + 2])
        return preview, labels


# ------------------------------------------- the RAE paper's side-by-side view (Table 1)
@dataclass
class PriorSamplesConfig:
    """``eval.prior-samples``: how many N(0, I) codes are decoded."""

    n_samples: int = 1250

    def __post_init__(self) -> None:
        _positive("prior-samples", n_samples=self.n_samples)


class PriorSamples(RandomGeneration):
    """Random generation from the model's prior, whatever ``eval.random-generation.sampler``
    is: with ``random-generation`` (GMM) and ``reconstruction-samples`` it gives the three FID
    columns of the RAE paper's Table 1 (Ghosh et al., ICLR 2020). A model without a prior
    (ae, rrae) is "does not apply"; a model that only samples uses its own sampler (its
    prior)."""

    Config = PriorSamplesConfig  # type: ignore[assignment]
    title = "Samples of the prior N(0, I)"

    @classmethod
    def title_for(cls, stamp: dict[str, Any]) -> str:
        """The prior's samples, or the model's own sampler's for a model without an encoder."""
        if stamped_sampler(stamp) == "model":
            return "Samples of the prior N(0, I) (the model's own sampler)"
        return cls.title

    def __init__(self, config: PriorSamplesConfig | None = None) -> None:
        cfg = config or PriorSamplesConfig()
        super().__init__(RandomGenerationConfig(n_samples=cfg.n_samples, sampler="prior"))

    def check_model(self, model: Any) -> None:
        """No refusal: a model without a prior is recorded as "does not apply"."""

    def check_sizes(self, sizes: EvalSizes) -> None:
        sizes.images("eval.prior-samples.n_samples", self.config.n_samples,
                     self.config.n_samples, "the decoded prior samples")
        sizes.produces("eval.prior-samples.n_samples", self.config.n_samples)


@dataclass
class ReconstructionSamplesConfig:
    """``eval.reconstruction-samples``: how many test images are reconstructed (None: all)."""

    n_images: int | None = None

    def __post_init__(self) -> None:
        if self.n_images is not None:
            _positive("reconstruction-samples", n_images=self.n_images)


class ReconstructionSamples:
    """The reconstructions of the test images as *samples*, so that every samples metric
    (FID, KID, precision/recall) scores them against the training set: the "REC." column of
    the RAE paper's Table 1, the floor a model's generated samples can reach in that
    feature space."""

    kind = "samples"
    version = 1
    needs = ("reconstruct",)
    Config = ReconstructionSamplesConfig
    title = "Reconstructions of the test images (scored as samples)"

    def __init__(self, config: ReconstructionSamplesConfig | None = None) -> None:
        self.config = config or ReconstructionSamplesConfig()

    def check_sizes(self, sizes: EvalSizes) -> None:
        """Before training: the reconstructions fit the memory; how many the metrics get."""
        n = sizes.n_test if self.config.n_images is None else min(self.config.n_images,
                                                                   sizes.n_test)
        key = "eval.reconstruction-samples.n_images"
        sizes.images(key, n, n, "the test reconstructions")
        sizes.produces(key, n)

    def run(self, ctx: EvalContext) -> ProtocolOutput:
        test = ctx.split("test")
        n = len(test) if self.config.n_images is None else min(self.config.n_images, len(test))
        parts, seen = [], 0
        for batch in ctx.batches(test):
            if seen >= n:
                break
            batch = batch[: n - seen]
            parts.append(ctx.reconstruct(batch))
            seen += batch.shape[0]
        images = torch.cat(parts)
        ctx.log(f"reconstruction-samples: {images.shape[0]} test reconstructions")
        return ProtocolOutput(data=images, preview=images[:N_PREVIEW], preview_nrow=8,
                              stamp={"n_images": int(images.shape[0]), "split": "test",
                                     "method": "model.reconstruct", "reference": "train"})
