"""Evaluation: run the selected protocols on a trained model and score their data with the
selected metrics; return the records of ``metrics.json``.

The host knows no protocol or metric by name: both are components registered by plugins
(``register_protocols``, ``register_metrics``), each built from its own ``eval.<name>``
options (see :class:`harness.config.EvalConfig`). For every protocol, in the order of
``eval.protocols``:

1. ``protocol.run(ctx)`` returns a :class:`harness.api.ProtocolOutput`: its own values
   (one record each), the data for metrics, a stamp and a preview for the PNG grid;
2. every metric that scores it (the protocol's ``kind`` is in ``metric.inputs``, or its name
   in ``metric.protocols``) and applies to the dataset gets the data and the reference split.

Every record carries a ``stamp``: the protocol's version, seed, dataset and image size, the
protocol's own stamp and the metric's, i.e. everything that defines the number; two numbers
are comparable exactly when their stamps agree. Provenance (cache hits, paths, timings)
goes in ``details``. A metric that raises gets a record with ``"value": null`` and its
``"error"``, printed once per process however many protocols it fails in, and the rest of the
evaluation goes on. A protocol that raises stops the evaluation (its error is the run's).

Evaluation runs on **one process** (the main one): nothing here all-reduces, so it cannot
hang waiting for processes that are not evaluating.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api import DataSplits, EvalContext
from .atomic import atomic_path, atomic_write_bytes
from .config import EvalConfig
from .errors import HarnessError

#: error messages already printed during this process's evaluations (say a long one once)
_WARNED: set[str] = set()

#: ``on_images(protocol, images, nrow)``: preview images for the run directory's PNG grids
ImageCallback = Callable[[str, Any, int], None]

__all__ = ["build_metrics", "build_protocols", "evaluate", "export_samples", "save_image_grid",
           "to_display"]


def _host(host: Any) -> Any:
    if host is None:
        from .plugins import get_host

        host = get_host()
    return host


def _instantiate(factory: Any, options: Any, progress: bool) -> Any:
    kwargs: dict[str, Any] = {}
    try:
        if "progress" in inspect.signature(factory).parameters:
            kwargs["progress"] = progress
    except (TypeError, ValueError):  # builtins without a signature
        pass
    return factory(options, **kwargs) if options is not None else factory(**kwargs)


def build_protocols(eval_cfg: EvalConfig, *, host: Any = None) -> list[tuple[str, Any]]:
    """``(name, protocol)`` for every protocol of ``eval.protocols``, built from its options."""
    host = _host(host)
    return [(name, _instantiate(host.get("protocol", name).load(), eval_cfg.options(name),
                                False)) for name in eval_cfg.protocols]


def check_protocols(model: Any, protocols: list[tuple[str, Any]]) -> None:
    """Let each protocol refuse a model it cannot evaluate (an optional
    ``check_model(model)`` raising :class:`harness.ConfigError`), before any training."""
    for _name, protocol in protocols:
        check = getattr(protocol, "check_model", None)
        if callable(check):
            check(model)


def build_metrics(eval_cfg: EvalConfig, *, host: Any = None,
                  progress: bool = False) -> list[tuple[str, Any]]:
    """``(name, metric)`` for every metric of ``eval.metrics``, built from its options.
    Configuration errors raise here, before any work is done."""
    host = _host(host)
    return [(name, _instantiate(host.get("metric", name).load(), eval_cfg.options(name),
                                progress)) for name in eval_cfg.metrics]


def _scores(metric: Any, protocol_name: str, protocol: Any) -> bool:
    return (getattr(protocol, "kind", None) in tuple(getattr(metric, "inputs", ()))
            or protocol_name in tuple(getattr(metric, "protocols", ())))


def _applies(metric: Any, info: Any) -> bool:
    check = getattr(metric, "applies", None)
    return bool(check(info)) if callable(check) else True


def _optional(obj: Any, method: str) -> dict[str, Any]:
    fn = getattr(obj, method, None)
    return dict(fn()) if callable(fn) else {}


def evaluate(
    model: Any,
    splits: DataSplits,
    eval_cfg: EvalConfig,
    *,
    seed: int,
    host: Any = None,
    protocols: list[tuple[str, Any]] | None = None,
    metrics: list[tuple[str, Any]] | None = None,
    device: Any = None,
    progress: bool = True,
    on_images: ImageCallback | None = None,
    on_labels: Callable[[str, Any], None] | None = None,
    samples_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Run the protocols of ``eval_cfg`` on a trained ``model``; return metrics.json records.

    ``protocols`` / ``metrics``: already built ``(name, object)`` pairs (None: built from
    ``eval_cfg``). ``on_images(protocol, images, nrow)`` receives each protocol's preview,
    ``on_labels(protocol, labels)`` its :class:`harness.api.GridLabels` when it has some.
    ``samples_dir``: also export what was scored there (:func:`export_samples`), and let every
    metric with an ``export(directory)`` method write its reference data (e.g. FID's feature
    statistics) into ``samples_dir/<metric>/``.
    """
    if protocols is None:
        protocols = build_protocols(eval_cfg, host=host)
    check_protocols(model, protocols)
    if metrics is None:
        metrics = build_metrics(eval_cfg, host=host, progress=progress)
    info = splits.info
    ctx = EvalContext(model, splits, seed=seed, batch_size=eval_cfg.batch_size, device=device,
                      progress=progress)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    records: list[dict[str, Any]] = []
    try:
        for name, protocol in protocols:
            scorers = [(m_name, m) for m_name, m in metrics
                       if _scores(m, name, protocol) and _applies(m, info)]
            ctx.needs_data = bool(scorers) or samples_dir is not None
            start = time.perf_counter()
            out = protocol.run(ctx)
            elapsed = time.perf_counter() - start
            stamp = {"protocol_version": int(getattr(protocol, "version", 1)), "seed": seed,
                     "dataset": info.name, "image_size": list(info.shape), **out.stamp}
            for key, value in out.values.items():
                records.append({
                    "protocol": name, "metric": key, "value": value, "split": out.split,
                    "source": "protocol", "higher_is_better": out.higher_is_better,
                    "stamp": dict(stamp), "details": {**out.details, "seconds": elapsed},
                })  # fmt: skip
            if on_images is not None and out.preview is not None:
                on_images(name, out.preview, out.preview_nrow)
            if on_labels is not None and out.preview_labels is not None:
                on_labels(name, out.preview_labels)
            if samples_dir is not None and out.data is not None and \
                    getattr(protocol, "kind", "") != "codes":
                export_samples(out.data, Path(samples_dir), name, info=info)
            if out.data is not None:
                reference = ctx.split("train" if out.split == "test" else out.split)
                for m_name, metric in scorers:
                    records += _score(name, out.data, m_name, metric, reference, splits, stamp,
                                      device, progress)
        if samples_dir is not None:
            for m_name, metric in metrics:
                export = getattr(metric, "export", None)
                if callable(export):
                    export(Path(samples_dir) / m_name)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return records


def to_display(images: Any, info: Any = None) -> Any:
    """Images (N, C, H, W) on the dataset's own [0, 1] scale, for PNGs and exported files: a
    dataset stored standardised (``info.metadata["standardization"] = {"mean", "std"}``, e.g.
    the bumps) is scaled back first, then values are clamped to [0, 1]. Without this a
    standardised image saturates (half its pixels below 0)."""
    images = images.detach().float().cpu()
    std = getattr(info, "metadata", {}).get("standardization") if info is not None else None
    if isinstance(std, dict):
        images = images * float(std["std"]) + float(std["mean"])
    return images.clamp(0, 1)


def export_samples(images: Any, directory: Path, protocol: str, info: Any = None) -> None:
    """Write the images a protocol produced, as scored, for re-scoring with other tools:
    ``<protocol>.npz`` (``images``: uint8 N×H×W×C, the layout pytorch-fid, torch-fidelity and
    clean-fid read) and ``<protocol>/NNNNNN.png``. Images are brought to the dataset's [0, 1]
    scale (:func:`to_display`) and rounded to 8 bits, the quantisation every FID tool applies
    to image files."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    arr = (to_display(images, info) * 255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).cpu().numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=arr)
    atomic_write_bytes(directory / f"{protocol}.npz", buffer.getvalue())
    folder = directory / protocol
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(arr):
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        with atomic_path(folder / f"{i:06d}.png") as tmp:
            pil.save(tmp, format="PNG")


def _score(protocol: str, data: Any, name: str, metric: Any, reference: Any, splits: DataSplits,
           stamp: dict[str, Any], device: Any, progress: bool) -> list[dict[str, Any]]:
    start = time.perf_counter()
    try:
        result = metric(data, reference, splits.info, device=device)
    except Exception as exc:  # one failing metric must not lose the others
        message = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
        if message not in _WARNED:
            _WARNED.add(message)
            said = message if message.startswith("not computed") else f"not computed: {message}"
            print(f"warning: metric '{name}' {said}", file=sys.stderr)
            if not isinstance(exc, HarnessError):
                traceback.print_exc(file=sys.stderr)
        return [{"protocol": protocol, "metric": name, "value": None, "error": message,
                 "split": "train", "source": name, "stamp": dict(stamp)}]
    extra, details = _optional(metric, "stamp"), _optional(metric, "details")
    elapsed = time.perf_counter() - start
    if progress:
        shown = {k: v for k, v in result.items() if not isinstance(v, list)}
        print(f"[eval] {protocol}: {name} = {shown} ({elapsed:.1f} s)", file=sys.stderr,
              flush=True)
    return [{
        "protocol": protocol, "metric": key, "value": value, "split": "train", "source": name,
        "higher_is_better": bool(getattr(metric, "higher_is_better", False)),
        "stamp": {**stamp, **extra}, "details": {**details, "seconds": elapsed},
    } for key, value in result.items()]  # fmt: skip


def save_image_grid(images: Any, path: str | os.PathLike[str], nrow: int = 8,
                    info: Any = None, labels: Any = None) -> Path:
    """Write images (N, C, H, W) as one PNG grid on the dataset's [0, 1] scale
    (:func:`to_display`), atomically; with ``labels`` (:class:`harness.api.GridLabels`) a
    labelled grid (:func:`harness.figures.labelled_grid`)."""
    from torchvision.utils import save_image

    path = Path(path)
    if labels is not None:
        from .figures import save_labelled_grid

        return save_labelled_grid(to_display(images, info), path, nrow, labels)
    with atomic_path(path) as tmp:
        save_image(to_display(images, info), tmp, nrow=nrow, padding=2, format="png")
    return path
