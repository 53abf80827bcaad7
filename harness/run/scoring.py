"""Evaluate a model into its run folder: the protocols and metrics, then metrics.json, the
image grids and the trackers; after training and for ``harness evaluate`` alike."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from harness.configuration.run_config import RunConfig
from harness.errors import EvaluationFailed
from harness.evaluation import evaluate as evaluation
from harness.evaluation.display import unscored_reason
from harness.evaluation.figures import grid_array
from harness.host.plugins import Host
from harness.rundir import contents
from harness.rundir.atomic import atomic_dir
from harness.rundir.layout import RunLayout


def evaluate_model(host: Host, model: Any, splits: Any, config: RunConfig, run_dir: Path, *,
                   device: Any = None, training: dict[str, Any] | None = None,
                   write_config: bool = False, save_samples: bool = False,
                   write_metrics: bool = True, trackers: Any = None,
                   fail: bool = True) -> dict[str, Any]:
    """Run the protocols, then write metrics.json and the image grids; returns the metrics
    document. An earlier metrics.json is kept as metrics.prev.json. With ``write_config`` the
    run's config.toml is rewritten too, after the evaluation succeeded (``harness evaluate
    --set``): a failed evaluation leaves config and metrics as they were. ``save_samples``
    exports what was scored into ``run_dir/samples/`` (see
    :func:`harness.evaluation.evaluate.export_samples`). ``trackers``: the run's accelerator when
    ``train.trackers`` is set; the final metrics and the preview grids are logged to it."""
    protocols = evaluation.build_protocols(config.eval, host=host)
    metrics = evaluation.build_metrics(config.eval, host=host, progress=True)
    model.eval()
    previews: dict[str, tuple[Any, int, Any]] = {}
    labels: dict[str, Any] = {}

    def on_images(protocol: str, images: Any, nrow: int) -> None:
        previews[protocol] = (images, nrow, None)

    def on_labels(protocol: str, grid_labels: Any) -> None:
        labels[protocol] = grid_labels

    notes = evaluation.EvalNotes()
    # the export replaces samples/ as a whole, once it is complete
    seconds: dict[str, dict[str, float]] = {}
    with atomic_dir(RunLayout(run_dir).samples) if save_samples else nullcontext() as samples:
        records = evaluation.evaluate(
            model, splits, config.eval, seed=config.seed, host=host, protocols=protocols,
            metrics=metrics, device=device, on_images=on_images, on_labels=on_labels,
            samples_dir=samples, model_name=config.model, notes=notes, seconds=seconds)
    previews = {p: (images, nrow, labels.get(p)) for p, (images, nrow, _) in previews.items()}
    extra: dict[str, Any] = {"eval": config.eval.as_dict()}
    if training is not None:
        extra["training"] = training
    ran = [(name, p) for name, p in protocols if name not in notes.not_applicable]
    extra.update(_unscored(ran, metrics, records, splits.info, host))
    extra.update(notes.as_dict())
    extra["evaluation_seconds"] = seconds  # where the evaluation's time went
    doc = contents.metrics_document(config, records, extra)
    for protocol, (images, nrow, grid) in previews.items():
        evaluation.save_image_grid(images, RunLayout(run_dir).image(protocol), nrow=nrow,
                                   info=splits.info, labels=grid)
    if trackers is not None:
        step = int((training or {}).get("steps", 0))
        log_final_metrics(trackers, doc, step=step)
        log_final_images(trackers, previews, splits.info, step=step)
    if not write_metrics:
        return doc
    contents.write_metrics(run_dir, doc)
    if fail:  # metrics.json says why; the config stays as it was
        raise_if_every_protocol_failed(doc, run_dir)
    if write_config:
        contents.write_config(run_dir, config)
    host.call_hook("run_finished", run_dir=str(run_dir), metrics=doc)
    return doc


def raise_if_every_protocol_failed(doc: dict[str, Any], run_dir: Path) -> None:
    """:class:`EvaluationFailed` (exit 1) when every protocol that ran failed: each has error
    records and no number (a protocol no metric scored, ``unscored``, did not fail)."""
    results = doc.get("results") or []
    ran = list(dict.fromkeys(r.get("protocol") for r in results))
    if not ran or doc.get("unscored"):
        return
    errors: dict[str, str] = {}
    for name in ran:
        own = [r for r in results if r.get("protocol") == name]
        if any(r.get("value") is not None for r in own) or not any(r.get("error") for r in own):
            return
        errors[str(name)] = str(next(r["error"] for r in own if r.get("error")))[:120]
    failed = "; ".join(f"{name}: {error}" for name, error in errors.items())
    raise EvaluationFailed(f"every protocol failed, no number was computed ({failed}); "
                           f"{RunLayout(run_dir).metrics} records each error")


def _unscored(protocols: list[tuple[str, Any]], metrics: list[tuple[str, Any]],
              records: list[dict[str, Any]], info: Any, host: Host) -> dict[str, Any]:
    """``{"unscored": {protocol: why}}`` for the protocols that produced no number at all
    (e.g. interpolation on the bumps, where no image metric applies); {} when all did."""
    scored = {rec.get("protocol") for rec in records}
    why = {name: unscored_reason(name, protocol, metrics, info, host)
           for name, protocol in protocols if name not in scored}
    return {"unscored": why} if why else {}


def log_final_metrics(accelerator: Any, doc: dict[str, Any], step: int) -> dict[str, float]:
    """Send the run's scalar metrics to the configured trackers (``train.trackers``) as
    ``final/<protocol>/<metric>``, beside the training loss; returns what was logged."""
    values = {f"final/{rec.get('protocol')}/{rec.get('metric')}": float(rec["value"])
              for rec in doc.get("results", [])
              if isinstance(rec.get("value"), int | float) and not isinstance(rec["value"], bool)}
    if values:
        accelerator.log(values, step=step)
    return values


def log_final_images(accelerator: Any, previews: dict[str, tuple[Any, ...]], info: Any,
                     step: int) -> list[str]:
    """Send each protocol's preview grid (the run directory's ``images/<protocol>.png``) to
    every configured tracker that takes images, as ``final/<protocol>``; returns the names of
    the trackers that got them. TensorBoard takes a batch of NHWC arrays; W&B, ClearML and Aim
    a list of HWC arrays. Trackers without images (MLflow, Comet, DVCLive) get the metrics only."""
    import numpy as np

    grids = {}
    for protocol, (images, nrow, *labels) in previews.items():
        grids[f"final/{protocol}"] = grid_array(evaluation.to_display(images, info), nrow,
                                                labels[0] if labels else None)
    told = []
    for tracker in getattr(accelerator, "trackers", None) or []:
        if not grids or not callable(getattr(tracker, "log_images", None)):
            continue
        if getattr(tracker, "name", "") == "tensorboard":
            tracker.log_images({k: np.ascontiguousarray(v)[None] for k, v in grids.items()},
                               step=step, dataformats="NHWC")
        else:
            tracker.log_images({k: [v] for k, v in grids.items()}, step=step)
        told.append(str(getattr(tracker, "name", type(tracker).__name__)))
    return told
