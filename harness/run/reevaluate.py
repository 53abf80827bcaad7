"""``harness evaluate``: re-evaluate a saved run, optionally with other ``eval`` settings."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from harness.configuration import run_config
from harness.errors import ConfigError, HarnessError
from harness.host.plugins import Host, host_or_default
from harness.run.build import build_model, load_data
from harness.run.preflight import check_eval_sizes
from harness.run.scoring import evaluate_model
from harness.rundir import contents
from harness.rundir.layout import RunLayout
from harness.training.stopsignal import set_next_command


def _override_eval(saved: dict[str, Any], changes: dict[str, Any], host: Host) -> dict[str, Any]:
    """The saved ``eval`` section with ``--set`` changes; when the list of protocols or
    metrics changes, the saved options of components no longer selected are dropped."""
    out = {**saved, **changes}
    if "protocols" in changes or "metrics" in changes:
        schema = run_config.Schema(host)
        probe = run_config.build_dataclass(
            run_config.EvalConfig, {k: v for k, v in out.items() if k in ("protocols", "metrics")},
            "eval")
        selected = set(probe.protocols or schema.default_protocols())
        selected |= set(probe.metrics or schema.all_metrics())
        out = {k: v for k, v in out.items()
               if not isinstance(v, dict) or k in selected or "." in k}
    return out


def evaluate_run(run_dir: str | Path, sets: list[str] | None = None, *,
                 save_samples: bool = False, write_metrics: bool = True,
                 host: Host | None = None) -> dict[str, Any]:
    """Re-evaluate a saved run, optionally with other ``eval`` settings. Everything is
    checked before any work; config.toml and metrics.json change only once the evaluation
    has succeeded (never with ``write_metrics=False``: `harness samples`)."""
    run_dir = Path(run_dir)
    path = RunLayout(run_dir).config
    if not path.is_file():
        raise HarnessError(f"'{run_dir}' is not a run directory ({path.name} missing)")
    data = run_config.load_toml(path)
    overrides = run_config.parse_set(sets or [])
    if set(overrides) - {"eval"}:
        raise ConfigError("`harness evaluate` only takes --set eval.KEY=VALUE; training settings "
                          "are fixed by the saved run")
    host = host_or_default(host)
    eval_section = _override_eval(dict(data.get("eval", {})), overrides.get("eval", {}), host)
    config = run_config.from_dict({**data, "eval": eval_section}, host=host)
    splits = load_data(host, config)
    check_eval_sizes(host, config.eval, splits)  # before any model work
    model = build_model(host, config, splits.info)
    contents.load_weights(run_dir, model, name=config.model, config=config.model_cfg)
    previous = contents.previous_training(run_dir)
    print(f"evaluating {run_dir} ({config.model} on {config.dataset})", file=sys.stderr)
    if write_metrics:
        set_next_command(f"harness evaluate {shlex.quote(str(run_dir))}",
                         f"the weights and metrics of {run_dir} are as they were")
    return evaluate_model(host, model, splits, config, run_dir, training=previous or None,
                          write_config=bool(overrides) and write_metrics,
                          save_samples=save_samples, write_metrics=write_metrics)
