"""Run configuration: four sections (``model``, ``data``, ``train``, ``eval``) plus the run's
identity (``run.model``, ``run.dataset``, ``run.seed``).

A configuration is saved as TOML in every run directory and can be given back with
``--config``; ``--set section.key=value`` overrides single values. Unknown keys and badly
typed values are refused with a message naming the key and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.api import DataConfig
from harness.errors import ConfigError, HarnessError, one_line

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: ``train.optimizer`` values (built by :func:`harness.training.optim.build_optimizer`)
OPTIMIZERS = ("adabelief", "adam", "adamw")
#: ``train.mixed_precision`` values (Accelerate's names)
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class TrainConfig:
    """The ``train`` section. Every value is checked when the section is built
    (``__post_init__``); what needs more than the section (the data, the processes, the model,
    installed trackers) is checked once by :func:`harness.training.plan.plan_training`."""

    steps: int | None = None  # optimizer steps; wins over epochs when both are set
    epochs: int | None = None  # passes over the training set (used when steps is unset)
    batch_size: int = 64  # the GLOBAL batch: split evenly over processes
    lr: float = 1e-3
    optimizer: str = "adabelief"  # adabelief | adam | adamw
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max gradient norm; None = off (the paper's setting)
    mixed_precision: str = "no"  # no | bf16 | fp16
    checkpoint_every: int = 500  # steps between checkpoints (and one at the end)
    log_every: int = 10  # steps between log records
    num_workers: int | None = None  # DataLoader workers; None: 0 in memory, cores for files
    compile: bool = False  # torch.compile the training forward (see harness.training.compile)
    trackers: list[str] = field(default_factory=list)  # e.g. ["tensorboard"], ["wandb"]

    DEFAULT_STEPS: typing.ClassVar[int] = 1000

    def __post_init__(self) -> None:
        # Neither steps nor epochs given: the default step count is a resolved value, written
        # to the run's config.toml like any other (epochs resolve to steps at training time).
        if self.steps is None and self.epochs is None:
            self.steps = self.DEFAULT_STEPS
        self._check_numbers()
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer '{self.optimizer}' is not known; valid: "
                              f"{', '.join(OPTIMIZERS)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"train.mixed_precision '{self.mixed_precision}' is not known; "
                              f"valid: {', '.join(MIXED_PRECISION)}")

    def _check_numbers(self) -> None:
        """Refuse values no run could use, before anything is built or written."""
        if self.batch_size < 1:
            raise ConfigError(
                f"train.batch_size must be at least 1 (it is the global number of images per "
                f"step), got {self.batch_size}"
            )
        for key in ("steps", "epochs"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(f"train.{key} must not be negative, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be a positive learning rate (e.g. 1e-3), got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(
                f"train.grad_clip must be positive, or unset to turn clipping off; got {self.grad_clip}"
            )
        for key in ("checkpoint_every", "log_every", "num_workers"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0 (0 turns it off), got {getattr(self, key)}")


@dataclass
class EvalConfig:
    """The ``eval`` section: which protocols and metrics run, and their options.

    The host knows no protocol or metric by name. ``protocols`` empty means every protocol
    a plugin registered with ``default=True``; ``metrics`` empty means every registered metric
    (each skips datasets it does not apply to). Options belong to the component that uses
    them: ``eval.<protocol>.<key>`` and ``eval.<metric>.<key>``, validated against that
    component's ``Config`` dataclass and kept here as instances of it (``components``).
    ``batch_size`` is the host's own: the batch of every forward pass during evaluation.
    A resolved config lists the protocols and metrics explicitly, with every option.
    """

    protocols: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    batch_size: int = 256
    components: dict[str, Any] = field(default_factory=dict)  # name -> its Config instance

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be a positive integer, got {self.batch_size}")

    def options(self, name: str) -> Any:
        """The ``Config`` instance of component ``name`` (None when it has no options)."""
        return self.components.get(name)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocols": list(self.protocols), "metrics": list(self.metrics),
                               "batch_size": self.batch_size}
        for name, options in self.components.items():
            if dataclasses.is_dataclass(options) and not isinstance(options, type):
                out[name] = _strip_none(dataclasses.asdict(options))
        return out


SECTIONS = ("model", "data", "train", "eval")
RUN_KEYS = ("model", "dataset", "seed", "preset")
NO_PRESET = "none"  # run.preset = "none" in a config file: no preset layer
EVAL_KEYS = ("protocols", "metrics", "batch_size")


@dataclass
class RunConfig:
    model: str
    dataset: str
    seed: int = 0
    model_cfg: Any = None  # the model's Config dataclass instance, validated once
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str | None = None  # the preset applied below --config/--set (plugin:name)

    def as_dict(self) -> dict[str, Any]:
        model = self.model_cfg
        if dataclasses.is_dataclass(model) and not isinstance(model, type):
            model = dataclasses.asdict(model)
        run: dict[str, Any] = {"model": self.model, "dataset": self.dataset, "seed": self.seed}
        if self.preset:
            run["preset"] = self.preset
        return {
            "run": run,
            "model": _strip_none(dict(model or {})),
            "data": _strip_none(dataclasses.asdict(self.data)),
            "train": _strip_none(dataclasses.asdict(self.train)),
            "eval": self.eval.as_dict(),
        }

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.as_dict())


def _strip_none(d: dict[str, Any]) -> dict[str, Any]:
    # TOML has no null: an absent key means "the default", which is None for these keys.
    return {k: v for k, v in d.items() if v is not None}


# ------------------------------------------------------------------------------ type coercion
def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` (from TOML or a ``--set`` string) to the field's annotated type."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"typing": typing, "Any": Any})  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""}):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (item_type,) = args or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, item_type, key) for v in value]
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int:
        return _coerce_int(value, key)
    if annotation is float:
        return _coerce_float(value, key)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


#: the largest integer a config value may hold (beyond it, sizes and counts are nonsense and
#: some would overflow torch's 64-bit sizes)
MAX_INT = 2**53


def _coerce_int(value: Any, key: str) -> int:
    """An integer from an int, an integral float or a string; NaN, inf, fractions, booleans
    and values beyond :data:`MAX_INT` are refused naming the key."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    number: int | None = value if isinstance(value, int) else None
    if number is None:
        text = value.strip() if isinstance(value, str) else value
        try:
            number = int(text, 10) if isinstance(text, str) else None
        except ValueError:
            number = None
        if number is None:
            try:
                as_float = float(text)  # "1e3", 4.0
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"{key} must be an integer, got {value!r}") from None
            if not math.isfinite(as_float):
                raise ConfigError(f"{key} must be a finite integer, got {value!r}")
            if as_float != int(as_float):
                raise ConfigError(f"{key} must be an integer, got {value!r}")
            number = int(as_float)
    assert number is not None
    if abs(number) > MAX_INT:
        raise ConfigError(f"{key}={value!r} is out of range (at most {MAX_INT} in size)")
    return number


def _coerce_float(value: Any, key: str) -> float:
    """A finite float; NaN and infinities are refused wherever a number is expected."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return number


def build_dataclass(cls: type, values: dict[str, Any], section: str,
                    extra: dict[str, Any] | None = None, owner: str = "") -> Any:
    """Instantiate config dataclass ``cls`` from ``values``: unknown keys refused, each value
    converted to its field's type, then the class checks its values itself, once, when it is
    built (``__post_init__``). ``extra``: already-built fields, passed as they are.
    ``owner`` (e.g. "plugin 'x'") is named when the class refuses a value without a
    :class:`ConfigError` of its own."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table of key = value, got {values!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls) if f.name not in (extra or {})]
    kwargs = {}
    for key, value in values.items():
        if key not in valid:
            raise ConfigError(
                f"unknown key '{section}.{key}'; valid keys in [{section}]: {', '.join(valid)}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs, **(extra or {}))
    except HarnessError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        by = f" (checked by {owner})" if owner else ""
        raise ConfigError(f"[{section}]{by}: {one_line(exc, 300, with_type=False)}") from exc


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["train.lr=1e-4", "model.k=8"]`` -> ``{"train": {"lr": "1e-4"}, "model": {"k": "8"}}``.

    Values stay strings and are converted against the target field's type later; JSON lists
    (``eval.metrics=["fid"]``) are accepted too.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(
                f"--set expects section.key=value (e.g. train.lr=1e-4), got {item!r}; "
                f"sections: {', '.join(SECTIONS)}"
            )
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section '{section}' in --set {item!r}; sections: {', '.join(SECTIONS)}"
            )
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--set {item!r}: the list is not valid JSON ({exc})") from exc
            except RecursionError as exc:
                raise ConfigError(f"--set {section}.{name.strip()}: the list nests too "
                                  "deeply") from exc
        name = name.strip()
        if section == "train" and name in TRAINING_LENGTH:  # the last length given wins
            out.get("train", {}).pop(_other_length(name), None)
        out.setdefault(section, {})[name] = value
    return out


#: the two ways to say how long to train; one choice, so a later one replaces the other
TRAINING_LENGTH = ("steps", "epochs")


def _other_length(name: str) -> str:
    return TRAINING_LENGTH[1 - TRAINING_LENGTH.index(name)]


def read_toml(path: Any, what: str, source: str | None = None) -> dict[str, Any]:
    """The one reader of the TOML files a user hands over (a run configuration, a suite, an
    executor configuration): bytes that are not UTF-8, a file that cannot be read, invalid
    TOML and nesting too deep for the parser (a RecursionError) are each one ``Error:``
    line, ``"{what} '{source}' ..."``. ``path`` may be an ``importlib.resources`` file."""
    source = source or str(path)
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} '{source}' is not UTF-8 text (byte {exc.start}): is it the right file?"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{what} '{source}' cannot be read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} '{source}' is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{what} '{source}' nests arrays or tables too deeply to be a "
                          f"{what}: is it the right file?") from exc


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    data = read_toml(path, "config file")
    bad = [s for s in SECTIONS + ("run",) if s in data and not isinstance(data[s], dict)]
    if bad:
        raise ConfigError(f"config file '{path}': [{bad[0]}] must be a table (section), "
                          f"not a single value")
    unknown = set(data) - set(SECTIONS) - {"run"}
    if unknown:
        raise ConfigError(
            f"config file '{path}' has unknown section(s) {sorted(unknown)}; "
            f"valid sections: run, {', '.join(SECTIONS)}"
        )
    return data


class Schema:
    """What resolving a configuration needs to know about the installed components: each
    one's ``Config`` dataclass and the defaults plugins declared. Built from the plugin host
    given to it, so this module names no component itself. ``model_config_cls`` overrides the
    model's Config (tests use toy configs)."""

    def __init__(self, host: Host, model_config_cls: Any = None) -> None:
        self.host = host
        self.model_config_cls = model_config_cls

    def model_config(self, name: str) -> type:
        if self.model_config_cls is not None:
            return self.model_config_cls  # type: ignore[no-any-return]
        return self.host.get("model", name).load().Config  # type: ignore[no-any-return]

    def default_dataset(self) -> str:
        registry = self.host.registry("dataset")
        claims = registry.defaults()
        if len(claims) == 1:
            return claims[0].name  # type: ignore[no-any-return]
        why = ("no installed plugin declares a default dataset" if not claims else
               "several plugins declare a default dataset ("
               + ", ".join(c.qualified_name for c in claims) + ")")
        raise ConfigError(f"no dataset given and {why}: pass --dataset NAME; known: "
                          f"{', '.join(registry.names()) or '(none)'}")

    def default_protocols(self) -> list[str]:
        return [c.name for c in self.host.registry("protocol").defaults()]

    def all_metrics(self) -> list[str]:
        return self.host.registry("metric").names()  # type: ignore[no-any-return]

    def preset(self, model: str, dataset: str) -> tuple[str, dict[str, dict[str, Any]]] | None:
        """The preset the model's plugin declares for ``dataset``: ``(name, sections)``.

        A model class may define ``preset(dataset) -> (name, {"model": ..., "train": ...,
        "data": ...}) | None`` (the built-in autoencoders give the paper's configuration
        per dataset); without it, or for an unknown dataset, there is none."""
        if self.model_config_cls is not None:
            return None
        find = getattr(self.host.get("model", model).load(), "preset", None)
        found = find(dataset) if callable(find) else None
        if found is None:
            return None
        name, sections = found
        unknown = set(sections) - {"model", "data", "train", "eval"}
        if unknown:
            raise ConfigError(f"preset '{name}' of model '{model}' has unknown section(s) "
                              f"{sorted(unknown)}; valid: {', '.join(SECTIONS)}")
        return str(name), {s: dict(v) for s, v in sections.items()}

    def owner(self, kind: str, name: str) -> str:
        """Who checks the options of component ``name``: named when it refuses a value."""
        if kind == "model" and self.model_config_cls is not None:
            return f"model '{name}'"
        return f"{kind} '{name}' of plugin '{self.host.get(kind, name).plugin}'"

    def eval_config(self, kind: str, name: str) -> type | None:
        """The ``Config`` of protocol or metric ``name`` (None: it takes no options)."""
        return getattr(self.host.get(kind, name).load(), "Config", None)


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{"fid.n_reference": "5"}`` (from --set) -> ``{"fid": {"n_reference": "5"}}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot:
            sub = out.setdefault(head, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"eval.{head} is a value, not a table: cannot set eval.{key}")
            sub[rest] = value
        else:
            out[key] = value
    return out


def build_eval(values: dict[str, Any], schema: Schema) -> EvalConfig:
    """The ``eval`` section: protocol and metric names resolved (empty -> the plugins'
    defaults), each component's options validated against its ``Config`` dataclass."""
    values = _nested(values)
    top = {k: v for k, v in values.items() if k in EVAL_KEYS}
    tables = {k: v for k, v in values.items() if k not in EVAL_KEYS and isinstance(v, dict)}
    loose = [k for k in values if k not in EVAL_KEYS and not isinstance(values[k], dict)]
    hints = typing.get_type_hints(EvalConfig)
    kwargs = {k: _coerce(v, hints[k], f"eval.{k}") for k, v in top.items()}
    host = schema.host
    protocols = [host.canonical("protocol", n, warn=True)
                 for n in kwargs.get("protocols") or schema.default_protocols()]
    metrics = [host.canonical("metric", n, warn=True)
               for n in kwargs.get("metrics") or schema.all_metrics()]
    for kind, names in (("protocol", protocols), ("metric", metrics)):
        for name in names:
            host.get(kind, name)  # unknown names fail here, with "did you mean"
    owners = {name: "protocol" for name in protocols} | {name: "metric" for name in metrics}
    tables = _renamed_tables(tables, owners, host)
    if loose:
        raise ConfigError(_moved_keys_message(loose, owners, schema))
    unknown = [name for name in tables if name not in owners]
    if unknown:
        raise ConfigError(
            f"eval.{unknown[0]}: no selected protocol or metric is called '{unknown[0]}'; "
            f"options go in eval.<protocol>.<key> or eval.<metric>.<key> for one of: "
            f"{', '.join(owners)}"
        )
    components: dict[str, Any] = {}
    for name, kind in owners.items():
        cls = schema.eval_config(kind, name)
        given = tables.get(name, {})
        if cls is None:
            if given:
                raise ConfigError(f"eval.{name}: {kind} '{name}' takes no options, got "
                                  f"{', '.join(sorted(given))}")
            continue
        components[name] = build_dataclass(cls, given, f"eval.{name}",
                                           owner=schema.owner(kind, name))
    return build_dataclass(EvalConfig, {**kwargs, "protocols": protocols, "metrics": metrics},
                           "eval", extra={"components": components})


def _canonical_eval_layer(values: dict[str, Any], host: Host) -> dict[str, Any]:
    """One layer of ``eval`` (a preset, a file, the --set list) with each component's option
    table (``random_generation``, or ``random_generation.n_samples`` from --set) under the
    component's current name, so a later layer using a former name overrides an earlier one
    using the new name (``harness run --resume`` with the original command line) instead of
    the two spellings being refused as the same options given twice."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        kind = next((k for k in ("protocol", "metric") if head not in EVAL_KEYS
                     and host.canonical(k, head) != head), None)
        if kind is not None:
            new = host.canonical(kind, head, warn=True)
            renamed = new + dot + rest
            if renamed in values:
                raise ConfigError(f"eval.{head} and eval.{new} are the same options (the "
                                  f"component was renamed '{new}'): keep only eval.{new}")
            key = renamed
        out[key] = value
    return out


def _renamed_tables(tables: dict[str, Any], owners: dict[str, str],
                    host: Host) -> dict[str, Any]:
    """Option tables under a component's former name (``eval.random-generation``) moved to
    its name; both spellings at once is refused."""
    out: dict[str, Any] = {}
    for name, options in tables.items():
        new = next((c for kind in ("protocol", "metric")
                    if (c := host.canonical(kind, name)) != name and c in owners), name)
        if new != name:
            host.canonical(owners[new], name, warn=True)
            if new in tables:
                raise ConfigError(f"eval.{name} and eval.{new} are the same options (the "
                                  f"component was renamed '{new}'): keep only eval.{new}")
        out[new] = options
    return out


def _moved_keys_message(keys: list[str], owners: dict[str, str], schema: Schema) -> str:
    """Name the new spelling of an old flat ``eval.KEY`` (options moved to their component)."""
    hints = []
    for key in keys:
        homes = [name for name, kind in owners.items()
                 if (cls := schema.eval_config(kind, name)) is not None
                 and key in {f.name for f in fields(cls)}]
        hints.append(f"eval.{key} is now " + " or ".join(f"eval.{h}.{key}" for h in homes)
                     if homes else f"unknown key 'eval.{key}'")
    return ("; ".join(hints) + f" (valid keys in [eval]: {', '.join(EVAL_KEYS)}, and a table "
            "eval.<protocol or metric> of that component's options; `harness protocols` and "
            "`harness metrics` list them)")


def resolve(
    *,
    model: str | None,
    dataset: str | None,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    seed: int | None = None,
    model_config_cls: Any = None,
    host: Host | None = None,
) -> RunConfig:
    """Merge a config file, command-line names and ``--set`` overrides into a RunConfig,
    every section validated once (the model's against its ``Config``, eval options against
    each protocol's and metric's ``Config``)."""
    data: dict[str, Any] = load_toml(config_file) if config_file else {}
    return resolve_data(data, model=model, dataset=dataset, sets=sets, seed=seed,
                        model_config_cls=model_config_cls, source=config_file, host=host)


def resolve_data(
    data: dict[str, Any],
    *,
    model: str | None = None,
    dataset: str | None = None,
    sets: list[str] | None = None,
    seed: int | None = None,
    model_config_cls: Any = None,
    source: str | Path | None = None,
    host: Host | None = None,
    saved: bool = False,
) -> RunConfig:
    """:func:`resolve` on an already-loaded config document (``source`` names it in errors).
    ``saved``: the document is a run's saved configuration, which holds its preset's values
    already: no preset layer goes below it, and ``run.preset`` is kept as it is."""
    config_file = source
    run = dict(data.get("run", {}))
    unknown_run = set(run) - set(RUN_KEYS)
    if unknown_run:
        raise ConfigError(f"unknown key(s) {sorted(unknown_run)} in [run]; valid: {', '.join(RUN_KEYS)}")
    if model and run.get("model") and run["model"] != model:
        raise ConfigError(
            f"config file '{config_file}' is for model '{run['model']}', not '{model}': "
            f"its [model] section would not fit. Drop --model to re-run '{run['model']}', or "
            f"start from a config written for '{model}'"
        )
    model_name = model or run.get("model")
    if not model_name:
        raise ConfigError("no model given: pass --model NAME (see `harness models`)")
    for key, value in (("run.model", model_name), ("run.dataset", dataset or run.get("dataset"))):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a name (a string), got {value!r}")
    from harness.host.plugins import host_or_default

    schema = Schema(host_or_default(host), model_config_cls)
    dataset_name = dataset or run.get("dataset") or schema.default_dataset()
    # Layers, lowest first: the plugin's preset for (model, dataset), the config file, --set.
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    preset_name: str | None = None
    if not saved and run.get("preset") != NO_PRESET:
        found = schema.preset(str(model_name), str(dataset_name))
        if found is not None:
            preset_name, layer = found
            for section, values in layer.items():
                sections[section].update(values)
    sections["eval"] = _canonical_eval_layer(sections["eval"], schema.host)
    above: dict[str, dict[str, Any]] = {s: dict(data.get(s, {})) for s in SECTIONS}
    above["eval"] = _canonical_eval_layer(above["eval"], schema.host)
    # The length of training is one choice: a --set of steps drops the file's epochs and
    # vice versa (parse_set keeps only the last one given), and a length given above the
    # preset drops the preset's other one (steps would otherwise win over a user's epochs).
    for section, values in parse_set(sets or []).items():
        if section == "eval":
            values = _canonical_eval_layer(values, schema.host)
        for mine in TRAINING_LENGTH if section == "train" else ():
            if mine in values:
                above["train"].pop(_other_length(mine), None)
        above[section].update(values)
    for mine in TRAINING_LENGTH:
        if mine in above["train"] and _other_length(mine) not in above["train"]:
            sections["train"].pop(_other_length(mine), None)
    for section in SECTIONS:
        sections[section].update(above[section])
    if seed is not None:
        run["seed"] = seed
    config = _build(str(model_name), str(dataset_name), run.get("seed", 0), sections, schema)
    if saved:
        config.preset = run.get("preset")
    else:
        config.preset = preset_name if run.get("preset") != NO_PRESET else NO_PRESET
    return config


def from_dict(data: dict[str, Any], *, host: Host | None = None, model_config_cls: Any = None) -> RunConfig:
    """Rebuild a RunConfig from :meth:`RunConfig.as_dict` output (a saved run)."""
    run = data.get("run", {})
    for key in ("model", "dataset"):
        if not isinstance(run.get(key), str) or not run.get(key):
            raise ConfigError(f"the saved config has no valid run.{key} (got {run.get(key)!r})")
    return resolve_data(data, host=host, model_config_cls=model_config_cls, saved=True)




def _build(model: str, dataset: str | None, seed: Any, sections: dict[str, dict[str, Any]],
           schema: Schema) -> RunConfig:
    return RunConfig(
        model=model,
        dataset=dataset or schema.default_dataset(),
        seed=_coerce(seed, int, "run.seed"),
        model_cfg=build_dataclass(schema.model_config(model), sections["model"], "model",
                                  owner=schema.owner("model", model)),
        data=build_dataclass(DataConfig, sections["data"], "data"),
        train=build_dataclass(TrainConfig, sections["train"], "train"),
        eval=build_eval(sections["eval"], schema),
    )
