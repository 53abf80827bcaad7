"""Evaluation: run the selected protocols on a trained model and score their data with the
selected metrics; return the records of ``metrics.json``.

The host knows no protocol or metric by name: both are components registered by plugins
(``register_protocols``, ``register_metrics``), each built from its own ``eval.<name>``
options (see :class:`harness.configuration.run_config.EvalConfig`). For every protocol, in the order of
``eval.protocols``:

1. ``protocol.run(ctx)`` returns a :class:`harness.api.ProtocolOutput`: its own values
   (one record each), the data for metrics, a stamp and a preview for the PNG grid;
2. every metric that scores it (the protocol's ``kind`` is in ``metric.inputs``, or its name
   in ``metric.protocols``) and applies to the dataset gets the data and the reference split.

Every record carries a ``stamp``: the protocol's version, seed, dataset and image size, the
protocol's own stamp and the metric's, i.e. everything that defines the number; two numbers
are comparable exactly when their stamps agree. Provenance (cache hits, paths, timings)
goes in ``details``.

What a plugin component returns is checked here, at the boundary, so that one bad component
never costs the others' numbers: a metric or protocol that raises, returns something that is
not a JSON value (a set, an object), or declares a ``version`` that is not an integer gets a
record with ``"value": null`` and an ``"error"`` naming the component and its plugin, printed
once per process as one line (the traceback too with ``HARNESS_DEBUG=1``); a NaN or infinite
number is stored as ``null`` with a ``"reason"``. Everything else is still computed and
written, and ``metrics.json`` is always valid JSON.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.api import DataSplits, EvalContext
from harness.configuration.run_config import EvalConfig
from harness.errors import ComponentFault, HarnessError, env_flag
from harness.rundir.atomic import atomic_path, atomic_write_bytes
from harness.rundir.schema import to_json

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

#: error messages already printed during this process's evaluations (say a long one once)
_WARNED: set[str] = set()

#: ``on_images(protocol, images, nrow)``: preview images for the run directory's PNG grids
ImageCallback = Callable[[str, Any, int], None]

__all__ = ["EvalNotes", "build_metrics", "build_protocols", "evaluate", "export_samples",
           "metric_scores", "not_applicable", "protocol_needs", "save_image_grid", "to_display",
           "why_metric_cannot_score"]


def _instantiate(factory: Any, options: Any, progress: bool) -> Any:
    kwargs: dict[str, Any] = {}
    try:
        if "progress" in inspect.signature(factory).parameters:
            kwargs["progress"] = progress
    except (TypeError, ValueError):  # builtins without a signature
        pass
    return factory(options, **kwargs) if options is not None else factory(**kwargs)


def build_protocols(eval_cfg: EvalConfig, *, host: Host) -> list[tuple[str, Any]]:
    """``(name, protocol)`` for every protocol of ``eval.protocols``, built from its options."""
    return [(name, _instantiate(host.get("protocol", name).load(), eval_cfg.options(name),
                                False)) for name in eval_cfg.protocols]


def protocol_needs(protocol: Any, capabilities: frozenset[str]) -> tuple[str, ...]:
    """The capabilities a protocol needs of a model: its ``needs``, a tuple of
    :data:`harness.api.CAPABILITIES` names, or a method of the model's capabilities
    returning one (a protocol whose sampler is chosen by what the model can do)."""
    needs = getattr(protocol, "needs", ())
    if callable(needs):
        needs = needs(capabilities)
    return tuple(needs or ())


def not_applicable(model: Any, protocols: list[tuple[str, Any]],
                   model_name: str) -> dict[str, str]:
    """``{protocol: "does not apply: <model> has no encoder"}`` for every protocol needing a
    capability the model does not have: recorded, listed, never run (not a failure)."""
    from harness.api import does_not_apply, model_capabilities

    caps = model_capabilities(model)
    out = {}
    for name, protocol in protocols:
        reason = does_not_apply(model_name, protocol_needs(protocol, caps), caps)
        if reason is not None:
            out[name] = reason
    return out


def check_protocols(model: Any, protocols: list[tuple[str, Any]],
                    model_name: str | None = None) -> dict[str, str]:
    """Before any training: let each protocol refuse a model it cannot evaluate with the
    options chosen (an optional ``check_model(model)`` raising :class:`harness.ConfigError`,
    e.g. the prior sampler on an autoencoder without a prior); returns the
    protocols that do not apply (:func:`not_applicable`). When none of them applies, the run
    would measure nothing: refused."""
    for _name, protocol in protocols:  # an option the user chose for this model: refused
        check = getattr(protocol, "check_model", None)
        if callable(check):
            check(model)
    name = model_name or _model_name(model)
    skipped = not_applicable(model, protocols, name)
    if protocols and len(skipped) == len(protocols):
        from harness.errors import ConfigError

        raise ConfigError(
            f"no selected protocol applies to model '{name}': "
            + "; ".join(f"{p} {why}" for p, why in skipped.items())
            + "; select others with --set eval.protocols=[...] (harness protocols lists them)")
    return skipped


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", "") or type(model).__name__)


@dataclass
class EvalNotes:
    """What an evaluation did not compute and why, for metrics.json and the summary:
    ``not_applicable`` (protocol -> "does not apply: ..."), ``not_scored`` (one
    ``{"protocol", "metric", "reason"}`` per metric that would score a protocol's kind but
    cannot, e.g. a dataset-trained FID on unlabelled data)."""

    not_applicable: dict[str, str] = field(default_factory=dict)
    not_scored: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.not_applicable:
            out["not_applicable"] = dict(self.not_applicable)
        if self.not_scored:
            out["not_scored"] = [dict(n) for n in self.not_scored]
        return out


def why_metric_cannot_score(metric: Any, info: Any) -> str:
    """A metric's own reason for not scoring this dataset (an optional ``why_not(info)``),
    else a plain one."""
    why = getattr(metric, "why_not", None)
    if callable(why):
        try:
            text = str(why(info) or "")
        except Exception as exc:  # a plugin's explanation must not cost the evaluation
            text = f"its reason could not be read ({type(exc).__name__})"
        if text:
            return text
    return f"does not apply to dataset '{info.name}'"


def build_metrics(eval_cfg: EvalConfig, *, host: Host,
                  progress: bool = False) -> list[tuple[str, Any]]:
    """``(name, metric)`` for every metric of ``eval.metrics``, built from its options.
    Configuration errors raise here, before any work is done."""
    return [(name, _instantiate(host.get("metric", name).load(), eval_cfg.options(name),
                                progress)) for name in eval_cfg.metrics]


def metric_scores(metric: Any, protocol_name: str, protocol: Any,
                  host: Host | None) -> bool:
    """Whether ``metric`` scores what ``protocol`` produced: by the protocol's ``kind``, or
    because the metric names it in ``protocols`` (a former name counts)."""
    if getattr(protocol, "kind", None) in tuple(getattr(metric, "inputs", ())):
        return True
    named = tuple(getattr(metric, "protocols", ()))
    if host is not None:
        named = tuple(host.canonical("protocol", n) for n in named)
    return protocol_name in named


def applies(metric: Any, info: Any) -> bool:
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
    host: Host | None = None,
    protocols: list[tuple[str, Any]] | None = None,
    metrics: list[tuple[str, Any]] | None = None,
    device: Any = None,
    progress: bool = True,
    on_images: ImageCallback | None = None,
    on_labels: Callable[[str, Any], None] | None = None,
    samples_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    notes: EvalNotes | None = None,
    seconds: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Run the protocols of ``eval_cfg`` on a trained ``model``; return metrics.json records.

    ``protocols`` / ``metrics``: already built ``(name, object)`` pairs (None: built from
    ``eval_cfg``). ``on_images(protocol, images, nrow)`` receives each protocol's preview,
    ``on_labels(protocol, labels)`` its :class:`harness.api.GridLabels` when it has some.
    ``samples_dir``: also export what was scored there (:func:`export_samples`), and let every
    metric with an ``export(directory)`` method write its reference data (e.g. FID's feature
    statistics) into ``samples_dir/<metric>/``. ``host`` builds the components that were not
    handed in and names their plugins in errors; None: both lists are given. A protocol that
    needs a capability the model lacks is not run (:func:`not_applicable`); it and every
    metric that would score a protocol's kind but cannot go into ``notes`` with the reason
    (``model_name``: the model's registered name, for those reasons). ``seconds``, when
    given, receives where the time went: ``{protocol: {"protocol": s, metric: s, ...}}``.
    """
    if protocols is None or metrics is None:
        if host is None:
            raise TypeError("evaluate() needs the plugin host to build eval.protocols and "
                            "eval.metrics, or both lists already built")
        if protocols is None:
            protocols = build_protocols(eval_cfg, host=host)
        if metrics is None:
            metrics = build_metrics(eval_cfg, host=host, progress=progress)
    notes = notes if notes is not None else EvalNotes()
    notes.not_applicable.update(check_protocols(model, protocols, model_name))
    info = splits.info
    ctx = EvalContext(model, splits, seed=seed, batch_size=eval_cfg.batch_size, device=device,
                      progress=progress)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    records: list[dict[str, Any]] = []
    try:
        for name, protocol in protocols:
            if name in notes.not_applicable:
                continue
            scorers = _scorers(name, protocol, metrics, info, host, notes)
            ctx.needs_data = bool(scorers) or samples_dir is not None
            start = time.perf_counter()
            out, stamp, own = _run_protocol(name, protocol, ctx, seed, host, info)
            cost = {"protocol": time.perf_counter() - start}
            if seconds is not None:
                seconds[name] = cost
            records += own
            if out is None:
                continue
            _hand_out(name, protocol, out, info, on_images, on_labels, samples_dir)
            if out.data is not None:
                for m_name, metric in scorers:
                    start = time.perf_counter()
                    records += _score_against(name, out, m_name, metric, ctx, splits, stamp,
                                              device, progress, host)
                    cost[m_name] = time.perf_counter() - start
        if samples_dir is not None:
            for m_name, metric in metrics:
                export = getattr(metric, "export", None)
                if callable(export):
                    export(Path(samples_dir) / m_name)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return records


def _scorers(name: str, protocol: Any, metrics: list[tuple[str, Any]], info: Any, host: Host | None,
             notes: EvalNotes) -> list[tuple[str, Any]]:
    """The metrics that score protocol ``name`` on this dataset; each that would score its
    kind but does not apply to the dataset goes into ``notes.not_scored`` with why."""
    scoring = [(m_name, m) for m_name, m in metrics if metric_scores(m, name, protocol, host)]
    scorers = [(m_name, m) for m_name, m in scoring if applies(m, info)]
    notes.not_scored += [{"protocol": name, "metric": m_name,
                          "reason": why_metric_cannot_score(m, info)}
                         for m_name, m in scoring if (m_name, m) not in scorers]
    return scorers


def _hand_out(name: str, protocol: Any, out: Any, info: Any, on_images: ImageCallback | None,
              on_labels: Callable[[str, Any], None] | None,
              samples_dir: str | os.PathLike[str] | None) -> None:
    """A protocol's preview and labels to the callbacks, and what it scored to
    ``samples_dir`` (codes are not images: not exported)."""
    if on_images is not None and out.preview is not None:
        on_images(name, out.preview, out.preview_nrow)
    if on_labels is not None and out.preview_labels is not None:
        on_labels(name, out.preview_labels)
    if samples_dir is not None and out.data is not None and \
            getattr(protocol, "kind", "") != "codes":
        export_samples(out.data, Path(samples_dir), name, info=info)


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


def _plugin_label(host: Host | None, kind: str, name: str) -> str:
    """``metric 'fid' (plugin 'metrics')``, or without the plugin where it is not known (a
    component handed in already built)."""
    if host is None:
        return f"{kind} '{name}'"
    try:
        plugin = host.get(kind, name).plugin
    except Exception:  # not registered (built by a test or a caller): say what we know
        return f"{kind} '{name}'"
    return f"{kind} '{name}' (plugin '{plugin}')"


def _not_computed(label: str, exc: BaseException) -> str:
    """The record's error for a failed component, printed once per process as one line (with
    the traceback under ``HARNESS_DEBUG=1``)."""
    if isinstance(exc, (HarnessError, ComponentFault)):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    if message not in _WARNED:
        _WARNED.add(message)
        said = message if message.startswith("not computed") else f"not computed: {message}"
        print(f"warning: {label} {said}", file=sys.stderr)
        if env_flag("HARNESS_DEBUG") and not isinstance(exc, ComponentFault):
            traceback.print_exception(exc, file=sys.stderr)
    return message


def _record_values(values: Any, base: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """One record per ``key: value`` of what a component returned, each value checked; a
    result that is not a dict of JSON values raises :class:`ComponentFault`."""
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise ComponentFault(f"returned a {type(values).__name__}, not a dict of name: value")
    checked = {key: to_json(value, where=key) for key, value in values.items()}
    records = []
    for key, (value, bad) in checked.items():
        record = {**base, "metric": key, "value": value}
        if bad:
            record["reason"] = f"not finite: {label} returned {', '.join(bad)}"
            print(f"warning: {record['reason']} (stored as null)", file=sys.stderr)
        records.append(record)
    return records


def protocol_version(protocol: Any) -> int:
    """A protocol's ``version``: a non-negative int (1 when absent)."""
    version = getattr(protocol, "version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ComponentFault(f"declares version = {version!r}; a protocol's version must be "
                             "a non-negative integer (raise it when its numbers change)")
    return version


def _run_protocol(name: str, protocol: Any, ctx: EvalContext, seed: int, host: Host | None, info: Any
                  ) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Run one protocol: ``(output, stamp, records)``, or ``(None, {}, [a not-computed
    record])`` when it raises or returns what cannot be recorded."""
    label = _plugin_label(host, "protocol", name)
    try:
        version = protocol_version(protocol)
        start = time.perf_counter()
        out = protocol.run(ctx)
        elapsed = time.perf_counter() - start
        stamp, _ = to_json({"protocol_version": version, "seed": seed,
                            "dataset": info.name, "image_size": list(info.shape),
                            **out.stamp}, strict=False)
        details, _ = to_json({**out.details, "seconds": elapsed}, strict=False)
        base = {"protocol": name, "split": out.split, "source": "protocol",
                "higher_is_better": bool(out.higher_is_better), "stamp": stamp}
        records = [{**r, "stamp": dict(stamp), "details": dict(details)}
                   for r in _record_values(out.values, base, label)]
    except Exception as exc:  # one failing protocol must not lose the others
        error = _not_computed(label, exc)
        return None, {}, [{"protocol": name, "metric": "error", "value": None,
                           "error": f"not computed: {label}: {error}", "source": "protocol",
                           "component": label}]
    return out, stamp, records


def _score_against(protocol: str, out: Any, name: str, metric: Any, ctx: EvalContext,
                   splits: DataSplits, stamp: dict[str, Any], device: Any, progress: bool,
                   host: Host | None) -> list[dict[str, Any]]:
    """Score one metric against the split the protocol stamps as its ``reference`` (default:
    the training split); ``"both"``: against train and test, the test values as
    ``<key>_test`` and the train-vs-test gap as ``<key>_gap`` (test − train)."""
    wanted = out.stamp.get("reference")
    if wanted == "test":
        return _score(protocol, out.data, name, metric, ctx.split("test"), splits, stamp,
                      device, progress, host, split="test")
    if wanted != "both":
        reference = ctx.split("train" if out.split == "test" else out.split)
        return _score(protocol, out.data, name, metric, reference, splits, stamp, device,
                      progress, host)
    train = _score(protocol, out.data, name, metric, ctx.split("train"), splits, stamp, device,
                   progress, host, split="train")
    test = _score(protocol, out.data, name, metric, ctx.split("test"), splits, stamp, device,
                  progress, host, split="test", suffix="_test")
    gaps = []
    by_key = {r["metric"]: r for r in train}
    for rec in test:
        key = rec["metric"].removesuffix("_test")
        if key in by_key:
            a, b = by_key[key].get("value"), rec.get("value")
            gap = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
            gaps.append({**rec, "metric": f"{key}_gap", "value": gap})
    return train + test + gaps


def _score(protocol: str, data: Any, name: str, metric: Any, reference: Any, splits: DataSplits,
           stamp: dict[str, Any], device: Any, progress: bool,
           host: Host | None = None, split: str = "train", suffix: str = "") -> list[dict[str, Any]]:
    start = time.perf_counter()
    label = _plugin_label(host, "metric", name)
    base: dict[str, Any] = {"protocol": protocol, "split": split, "source": name}
    try:
        # a metric that reports a null on held-out images (memorisation) gets the test split
        held_out = {"held_out": splits.test} if getattr(metric, "uses_held_out", False) \
            and split == "train" else {}
        result = metric(data, reference, splits.info, device=device, **held_out)
        if suffix and isinstance(result, dict):
            result = {f"{key}{suffix}": value for key, value in result.items()}
        extra, _ = to_json(_optional(metric, "stamp"), strict=False)
        details, _ = to_json(_optional(metric, "details"), strict=False)
        elapsed = time.perf_counter() - start
        # the split compared with is the protocol's choice (a metric's stamp may say "train")
        where = {"reference": split} if split != "train" else {}
        base.update(higher_is_better=bool(getattr(metric, "higher_is_better", False)),
                    stamp={**stamp, **extra, **where}, details={**details, "seconds": elapsed})
        records = _record_values(result, base, label)
    except Exception as exc:  # one failing metric must not lose the others
        message = _not_computed(label, exc)
        if isinstance(exc, ComponentFault):
            message = f"not computed: {label} {message}"
        return [{**base, "metric": key, "value": None, "error": message,
                 "component": label, "stamp": dict(stamp)}
                for key in (k + suffix for k in _value_keys(metric, name))]
    if progress:
        shown = {r["metric"]: r["value"] for r in records if not isinstance(r["value"], list)}
        print(f"[eval] {protocol}: {name} = {shown} ({elapsed:.1f} s)", file=sys.stderr,
              flush=True)
    return [{**r, "stamp": dict(r["stamp"])} for r in records]


def _value_keys(metric: Any, name: str) -> list[str]:
    """The keys a metric's numbers are recorded under (its ``display`` declares them), so a
    failed one leaves its null records in the same places as the numbers it would have
    given; a metric that declares none is recorded under its name."""
    display = getattr(metric, "display", None)
    return list(display) if isinstance(display, dict) and display else [name]


def save_image_grid(images: Any, path: str | os.PathLike[str], nrow: int = 8,
                    info: Any = None, labels: Any = None) -> Path:
    """Write images (N, C, H, W) as one PNG grid on the dataset's [0, 1] scale
    (:func:`to_display`), atomically; with ``labels`` (:class:`harness.api.GridLabels`) a
    labelled grid (:func:`harness.evaluation.figures.labelled_grid`)."""
    path = Path(path)
    if labels is not None:
        from harness.evaluation.figures import save_labelled_grid

        return save_labelled_grid(to_display(images, info), path, nrow, labels)
    from torchvision.utils import save_image  # ~1.5 s: torchvision imports its models and ops

    with atomic_path(path) as tmp:
        save_image(to_display(images, info), tmp, nrow=nrow, padding=2, format="png")
    return path
