"""The evaluation protocols (paper section 3): reconstruction, random generation, interpolation.

:func:`evaluate` runs the protocols chosen in the ``eval`` section on a trained model and
returns the records of ``metrics.json``. Every record names the protocol that produced it and
carries a ``stamp`` with everything that determines the number (protocol version, sample
counts, sampler, reference set, feature extractor and its weights hash, seed, dataset, image
size), so two numbers are comparable exactly when their stamps agree.

* **reconstruction** — rec error of SPEC on the test split,
  ``100 * ||X_hat - X||_F / ||X||_F`` over the *whole* test set, accumulated as two float64
  sums (not a mean of per-batch ratios; that one goes in the record's ``details`` as
  ``rec_error_percent_batch_mean``, for comparison only), with ``model.reconstruct`` (eval
  mode: the stored basis for the rrae family, z = mu for variational models). One record.
* **random_generation** — encode the training set (``model.encode``), fit a scikit-learn
  ``GaussianMixture`` (full covariance, ``random_state=seed``), sample ``n_samples`` codes,
  shuffle them (sklearn returns them grouped by component) and decode.
* **interpolation** — ``n_pairs`` seeded random pairs of distinct training images, linear
  interpolation of their codes at ``t = i / (n_interp + 1)``, ``i = 1..n_interp`` (interior
  points only, endpoints excluded), decode.
* **codes** — not an image protocol: metrics whose ``protocols`` include ``"codes"`` (e.g.
  ``collapse``) get the (N, k) training codes. It runs whenever random generation runs (the
  codes are computed there anyway) or when ``"codes"`` is listed in ``eval.protocols``.

Image metrics receive the generated images and the training split as reference. A metric
that raises (e.g. FID weights missing) gets a record with ``"value": null`` and an
``"error"`` message, a warning goes to stderr, and the rest of the evaluation goes on.

Evaluation runs on **one process** (call it on the main process only): nothing here
all-reduces, so it cannot hang waiting for processes that are not evaluating.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .api import DatasetInfo, DataSplits
from .config import EvalConfig
from .errors import ConfigError, HarnessError

PROTOCOL_VERSION = 1
IMAGE_PROTOCOLS = ("reconstruction", "random_generation", "interpolation")
PROTOCOLS = (*IMAGE_PROTOCOLS, "codes")
SAMPLER = "sklearn.mixture.GaussianMixture(full)"
N_PREVIEW = 64

#: error messages already printed during this process's evaluations (say a long one once)
_WARNED: set[str] = set()

#: ``on_images(protocol, images, nrow)``: preview images for the run directory's PNG grids
ImageCallback = Callable[[str, torch.Tensor, int], None]

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_VERSION",
    "build_metrics",
    "encode_dataset",
    "evaluate",
    "interpolate_codes",
    "interpolation_images",
    "interpolation_pairs",
    "random_generation_images",
    "reconstruction_error",
    "save_image_grid",
]


# ----------------------------------------------------------------------------- helpers
def _batches(dataset: Dataset, batch_size: int) -> Any:
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        yield batch[0] if isinstance(batch, list | tuple) else batch


def _model_device(model: Any, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[eval] {message}", file=sys.stderr, flush=True)


@torch.no_grad()
def reconstruction_error(
    model: Any, dataset: Dataset, *, batch_size: int = 256, device: Any = None
) -> dict[str, float]:
    """rec over a whole dataset: ``100 * sqrt(sum ||X_hat - X||^2 / sum ||X||^2)``.

    Also returns the mean of per-batch rec (batches of ``batch_size``), which depends on the
    batch size and is given only for comparison with code that reports it.
    """
    device = _model_device(model, device)
    err_sq = 0.0
    ref_sq = 0.0
    batch_ratios: list[float] = []
    n = 0
    for x in _batches(dataset, batch_size):
        x_hat = model.reconstruct(x.to(device)).detach().to("cpu", torch.float64)
        x64 = x.to(torch.float64)
        e = float(((x_hat - x64) ** 2).sum())
        r = float((x64**2).sum())
        err_sq += e
        ref_sq += r
        batch_ratios.append(100.0 * (e / r) ** 0.5 if r > 0 else float("nan"))
        n += int(x.shape[0])
    if n == 0:
        raise HarnessError("the test split is empty: nothing to reconstruct")
    if ref_sq == 0.0:
        raise HarnessError("the test images are all zero: the relative error is undefined")
    return {
        "rec_error_percent": 100.0 * (err_sq / ref_sq) ** 0.5,
        "rec_error_percent_batch_mean": float(np.mean(batch_ratios)),
        "n_images": float(n),
    }


@torch.no_grad()
def encode_dataset(
    model: Any, dataset: Dataset, *, batch_size: int = 256, device: Any = None
) -> torch.Tensor:
    """Deterministic bottleneck codes (N, k) of every image of ``dataset`` (float32, CPU)."""
    device = _model_device(model, device)
    codes = [
        model.encode(x.to(device)).detach().float().cpu() for x in _batches(dataset, batch_size)
    ]
    if not codes:
        raise HarnessError("cannot encode an empty dataset")
    return torch.cat(codes)


@torch.no_grad()
def _decode(model: Any, codes: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    out = [
        model.decode(codes[i : i + batch_size].to(device)).detach().float().cpu()
        for i in range(0, codes.shape[0], batch_size)
    ]
    return torch.cat(out)


def fit_gmm(codes: torch.Tensor, n_components: int, seed: int) -> Any:
    """scikit-learn GaussianMixture (full covariance) fitted on the codes, seeded."""
    from sklearn.mixture import GaussianMixture

    n_components = max(1, min(n_components, codes.shape[0]))
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed)
    gmm.fit(codes.double().numpy())
    return gmm


def sample_codes(codes: torch.Tensor, n_samples: int, n_components: int, seed: int) -> torch.Tensor:
    """Fit the GMM on ``codes`` and draw ``n_samples`` codes, shuffled with ``seed``."""
    gmm = fit_gmm(codes, n_components, seed)
    samples, _ = gmm.sample(n_samples)
    order = np.random.default_rng(seed).permutation(n_samples)
    return torch.from_numpy(samples[order]).float()


def random_generation_images(
    model: Any, train_codes: torch.Tensor, *, n_samples: int, gmm_components: int, seed: int,
    batch_size: int = 256, device: Any = None,
) -> torch.Tensor:  # fmt: skip
    """Images decoded from ``n_samples`` GMM samples of the training codes."""
    samples = sample_codes(train_codes, n_samples, gmm_components, seed)
    return _decode(model, samples, batch_size, _model_device(model, device))


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


@torch.no_grad()
def interpolation_images(
    model: Any, dataset: Dataset, *, n_pairs: int, n_interp: int, seed: int,
    batch_size: int = 256, device: Any = None,
) -> torch.Tensor:  # fmt: skip
    """Decoded interior interpolation points of seeded random pairs of ``dataset`` images."""
    device = _model_device(model, device)
    a, b = interpolation_pairs(len(dataset), n_pairs, seed)  # type: ignore[arg-type]
    index = torch.cat([a, b])
    images = torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in index]).float()
    codes = torch.cat([model.encode(images[i : i + batch_size].to(device)).detach().float().cpu()
                       for i in range(0, images.shape[0], batch_size)])  # fmt: skip
    za, zb = codes[:n_pairs], codes[n_pairs:]
    return _decode(model, interpolate_codes(za, zb, n_interp), batch_size, device)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int = 8) -> Path:
    """Write images (N, C, H, W) as one PNG grid, clamped to [0, 1]; atomic (temp, then
    ``os.replace``) so a crash never leaves a half-written file behind."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix or '.png'}")
    try:
        save_image(images.detach().float().cpu().clamp(0, 1), tmp, nrow=nrow, padding=2)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ----------------------------------------------------------------------------- metrics
def build_metrics(
    eval_cfg: EvalConfig, *, host: Any = None, progress: bool = False
) -> list[Any]:
    """Instantiate the metrics named in ``eval.metrics`` (empty: every registered metric).

    Each factory gets the ``eval`` options it declares as parameters (e.g. FID's
    ``feature_extractor``, ``fid_weights``, ``n_reference``, ``batch_size``), plus
    ``progress`` if it accepts it. Configuration errors (unknown metric, unknown extractor)
    raise here, before any work is done.
    """
    if host is None:
        from .plugins import get_host

        host = get_host()
    registry = host.registry("metric")
    names = list(eval_cfg.metrics) or registry.names()
    options = {**asdict(eval_cfg), "progress": progress}
    defaults = asdict(EvalConfig())
    metrics = []
    for name in names:
        factory = registry.get(name).load()
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # builtins without a signature
            params = {}  # type: ignore[assignment]
        config_cls = getattr(factory, "Config", None)
        if config_cls is not None and dataclasses.is_dataclass(config_cls):
            # metric contract: factory(Config(...), progress=...); until eval.<metric>.<key>
            # exists, Config gets the flat eval options of the same names that were changed
            # from their defaults (the metric's own defaults apply otherwise)
            fields = {f.name for f in dataclasses.fields(config_cls)}
            config = config_cls(**{k: options[k] for k in fields
                                   if k in defaults and options[k] != defaults[k]})
            extra = {"progress": progress} if "progress" in params else {}
            metrics.append(factory(config, **extra))
            continue
        kwargs = {k: options[k] for k in params if k in options and k != "metrics"}
        metrics.append(factory(**kwargs))
    return metrics


def _applies(metric: Any, info: DatasetInfo) -> bool:
    check = getattr(metric, "applies", None)
    return bool(check(info)) if callable(check) else True


def _run_metrics(
    protocol: str, data: torch.Tensor, metrics: Sequence[Any], splits: DataSplits,
    stamp: dict[str, Any], device: Any, progress: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    records: list[dict[str, Any]] = []
    for metric in metrics:
        if protocol not in getattr(metric, "protocols", ()) or not _applies(metric, splits.info):
            continue
        name = getattr(metric, "name", type(metric).__name__)
        start = time.perf_counter()
        try:
            result = metric(data, splits.train, splits.info, device=device)
        except Exception as exc:  # one failing metric must not lose the others
            message = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
            if message in _WARNED:
                print(f"warning: metric '{name}' failed in {protocol}: the same error as above",
                      file=sys.stderr)
            else:
                _WARNED.add(message)
                print(f"warning: metric '{name}' failed in {protocol}: {message}", file=sys.stderr)
            if not isinstance(exc, HarnessError):
                traceback.print_exc(file=sys.stderr)
            records.append({"protocol": protocol, "metric": name, "value": None,
                            "error": message, "split": "train", "source": name,
                            "stamp": dict(stamp)})  # fmt: skip
            continue
        get_stamp = getattr(metric, "stamp", None)
        extra = get_stamp() if callable(get_stamp) else {}
        get_details = getattr(metric, "details", None)
        details = get_details() if callable(get_details) else {}
        for key, value in result.items():
            records.append({
                "protocol": protocol, "metric": key, "value": value, "split": "train",
                "source": name,
                "higher_is_better": bool(getattr(metric, "higher_is_better", False)),
                "stamp": {**stamp, **extra},
                **({"details": details} if details else {}),
            })  # fmt: skip
        _log(progress, f"{protocol}: {name} = "
             f"{ {k: v for k, v in result.items() if not isinstance(v, list)} } "
             f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
    return records


# ----------------------------------------------------------------------------- evaluate
def evaluate(
    model: Any,
    splits: DataSplits,
    eval_cfg: EvalConfig,
    *,
    seed: int,
    metrics: list[Any] | None = None,
    device: Any = None,
    progress: bool = True,
    on_images: ImageCallback | None = None,
) -> list[dict[str, Any]]:
    """Run the protocols of ``eval_cfg`` on a trained ``model``; return metrics.json records.

    ``metrics``: metric objects (see :func:`build_metrics`; None builds them from
    ``eval_cfg``). ``on_images(protocol, images, nrow)`` receives up to 64 preview images per
    protocol (reconstruction: originals and reconstructions in alternating rows).
    """
    unknown = [p for p in eval_cfg.protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(
            f"unknown protocol(s) {unknown} in eval.protocols; valid: {', '.join(PROTOCOLS)}"
        )
    if metrics is None:
        metrics = build_metrics(eval_cfg, progress=progress)
    info = splits.info
    device = _model_device(model, device)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    base = {"protocol_version": PROTOCOL_VERSION, "seed": seed, "dataset": info.name,
            "image_size": list(info.shape)}  # fmt: skip
    bs = eval_cfg.batch_size
    records: list[dict[str, Any]] = []
    try:
        if "reconstruction" in eval_cfg.protocols:
            start = time.perf_counter()
            rec = reconstruction_error(model, splits.test, batch_size=bs, device=device)
            stamp = {**base, "n_images": int(rec["n_images"]), "method": "model.reconstruct",
                     "formula": "100*||X_hat-X||_F/||X||_F over the whole split"}  # fmt: skip
            records.append({
                "protocol": "reconstruction", "metric": "rec_error_percent",
                "value": rec["rec_error_percent"], "split": "test", "source": "protocol",
                "higher_is_better": False, "stamp": stamp,
                # for comparison only: depends on the batch size (eval.batch_size)
                "details": {"rec_error_percent_batch_mean": rec["rec_error_percent_batch_mean"],
                            "batch_size": bs},
            })  # fmt: skip
            _log(progress, f"reconstruction: rec {rec['rec_error_percent']:.3f}% "
                 f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
            needs_images = any("reconstruction" in getattr(m, "protocols", ()) for m in metrics)
            if on_images is not None or needs_images:
                x = next(iter(_batches(splits.test, 32)))
                with torch.no_grad():
                    x_hat = model.reconstruct(x.to(device)).detach().float().cpu()
                if on_images is not None:
                    rows = [t for i in range(0, x.shape[0], 8)
                            for t in (x[i : i + 8], x_hat[i : i + 8])]  # fmt: skip
                    on_images("reconstruction", torch.cat(rows), 8)
                if needs_images:
                    recon = torch.cat([model.reconstruct(b.to(device)).detach().float().cpu()
                                       for b in _batches(splits.test, bs)])  # fmt: skip
                    records += _run_metrics("reconstruction", recon, metrics, splits,
                                            {**base, "split": "test"}, device, progress)

        run_codes = "codes" in eval_cfg.protocols or "random_generation" in eval_cfg.protocols
        if run_codes:
            start = time.perf_counter()
            train_codes = encode_dataset(model, splits.train, batch_size=bs, device=device)
            _log(progress, f"encoded {train_codes.shape[0]} training images to k="
                 f"{train_codes.shape[1]} ({time.perf_counter() - start:.1f} s)")  # fmt: skip
            stamp = {**base, "codes": "model.encode(train)", "n_codes": train_codes.shape[0],
                     "k": int(train_codes.shape[1])}  # fmt: skip
            records += _run_metrics("codes", train_codes, metrics, splits, stamp, device, progress)

        if "random_generation" in eval_cfg.protocols:
            start = time.perf_counter()
            images = random_generation_images(
                model, train_codes, n_samples=eval_cfg.n_samples,
                gmm_components=eval_cfg.gmm_components, seed=seed, batch_size=bs, device=device,
            )  # fmt: skip
            _log(progress, f"random_generation: {images.shape[0]} images "
                 f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
            if on_images is not None:
                on_images("random_generation", images[:N_PREVIEW], 8)
            stamp = {**base, "n_samples": eval_cfg.n_samples,
                     "gmm_components": min(eval_cfg.gmm_components, train_codes.shape[0]),
                     "sampler": SAMPLER, "codes": "model.encode(train)",
                     "reference": "train"}  # fmt: skip
            records += _run_metrics("random_generation", images, metrics, splits, stamp,
                                    device, progress)  # fmt: skip
            del images

        if "interpolation" in eval_cfg.protocols:
            start = time.perf_counter()
            images = interpolation_images(
                model, splits.train, n_pairs=eval_cfg.n_pairs, n_interp=eval_cfg.n_interp,
                seed=seed, batch_size=bs, device=device,
            )  # fmt: skip
            _log(progress, f"interpolation: {images.shape[0]} images "
                 f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
            if on_images is not None:
                per_row = eval_cfg.n_interp
                on_images("interpolation", images[: per_row * max(1, N_PREVIEW // per_row)],
                          per_row)  # fmt: skip
            stamp = {**base, "n_pairs": eval_cfg.n_pairs, "n_interp": eval_cfg.n_interp,
                     "t": "i/(n_interp+1), i=1..n_interp (interior points)",
                     "pairs": "seeded random pairs of distinct training images",
                     "reference": "train"}  # fmt: skip
            records += _run_metrics("interpolation", images, metrics, splits, stamp,
                                    device, progress)  # fmt: skip
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return records
