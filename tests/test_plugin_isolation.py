"""Plugin isolation (issue 9, item 4): what a third-party plugin cannot break.

* a built-in component keeps its bare name when a third-party plugin registers the same name
  (the newcomer is reachable as ``plugin:name``, with a warning on its record);
* a notification hook that raises during a run is reported once and disabled for the rest of
  the run (fatal in strict mode), and the run finishes;
* ``sys.exit()`` / ``KeyboardInterrupt`` / any ``BaseException`` at a plugin's import is
  reported and the plugin dropped, instead of ending the command silently.
"""

from __future__ import annotations

import importlib
import itertools
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import hookimpl
from harness.errors import ComponentConflict, PluginError
from harness.host import plugins as plugins_mod
from harness.host.plugins import load_host
from harness.host.registry import COMPONENT_HOOKS, KINDS, Component, ComponentShadowed, Registry

EXAMPLE_PLUGIN_DIR = Path(__file__).resolve().parent / "example_plugin"


@pytest.fixture(autouse=True)
def _lenient_and_clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("HARNESS_STRICT_PLUGINS", "HARNESS_LOAD_PLUGINS", "HARNESS_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins_mod.reset_host()
    yield
    plugins_mod.reset_host()


class Impostor:
    """A third-party plugin registering one built-in name of every kind."""

    @hookimpl
    def register_models(self, register: Any) -> None:
        register("vrrae", "json:dumps", "not the real VRRAE")
        register("impostor-own", "json:dumps", "a name nobody else has")

    @hookimpl
    def register_datasets(self, register: Any) -> None:
        register("bumps", "json:loads", "not the real bumps")

    @hookimpl
    def register_metrics(self, register: Any) -> None:
        register("fid", "json:dumps", "not the real FID")


# ----------------------------------------------------------------- built-in names are kept
def test_builtin_names_survive_a_third_party_namesake() -> None:
    host = load_host({"impostor": Impostor()})
    assert host.get("model", "vrrae").plugin == "autoencoders"
    assert host.get("dataset", "bumps").plugin == "datasets"
    assert host.get("metric", "fid").plugin == "metrics"
    # The newcomers are kept, reachable only by their qualified names.
    assert host.get("model", "impostor:vrrae").load() is json.dumps
    assert host.get("dataset", "impostor:bumps").load() is json.loads
    assert host.get("model", "impostor-own").plugin == "impostor"
    record = host.records["impostor"]
    assert record.loaded and record.error is None
    assert len(record.warnings) == 3
    assert record.warnings[0] == (
        "model 'vrrae' is a built-in name (plugin 'autoencoders' keeps it); the one from "
        "plugin 'impostor' is reachable only as 'impostor:vrrae'"
    )
    assert all(r.warnings == [] for r in host.records.values() if r.builtin)
    # Listings show the name to type.
    rows = {(row["name"], row["plugin"]) for row in map(Component.summary, host.registry("model"))}
    assert {("vrrae", "autoencoders"), ("impostor:vrrae", "impostor")} <= rows


def test_harness_plugins_shows_the_shadowing_warning(capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli

    load_host({"impostor": Impostor()})
    cli.main(["plugins"])
    out = capsys.readouterr().out
    assert "warning: model 'vrrae' is a built-in name" in out
    cli.main(["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["impostor"]["error"] is None
    assert len(rows["impostor"]["warnings"]) == 3


def test_shadowing_is_fatal_in_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "")  # built-ins only, whatever else is installed
    with pytest.raises(PluginError, match=r"plugin 'impostor': model 'vrrae' is a built-in"):
        load_host({"impostor": Impostor()})


def _component(name: str, plugin: str, builtin: bool = False) -> Component:
    return Component("model", name, f"json:{plugin}", "", plugin, builtin=builtin)


def test_registry_builtin_wins_whichever_registers_first() -> None:
    registry = Registry("model")
    registry.add(_component("m", "third"))
    with pytest.raises(ComponentConflict) as info:  # a second third party: a plain conflict
        registry.add(_component("m", "fourth"))
    assert "several plugins" in str(info.value)
    with pytest.raises(ComponentConflict):
        registry.get("m")
    # The built-in arrives last: it takes the bare name, both newcomers are shadowed.
    with pytest.raises(ComponentShadowed) as shadow:
        registry.add(_component("m", "builtin", builtin=True))
    assert {c.plugin for c in shadow.value.shadowed} == {"third", "fourth"}
    assert registry.get("m").plugin == "builtin"
    assert registry.get("third:m").plugin == "third"
    assert registry.get("fourth:m").plugin == "fourth"
    # The built-in plugin dropped: back to the third-party conflict.
    registry.remove_plugin("builtin")
    with pytest.raises(ComponentConflict, match="several plugins"):
        registry.get("m")
    registry.remove_plugin("fourth")
    assert registry.get("m").plugin == "third"


def test_two_builtins_claiming_one_name_still_conflict() -> None:
    registry = Registry("model")
    registry.add(_component("m", "b1", builtin=True))
    with pytest.raises(ComponentConflict, match="several plugins"):
        registry.add(_component("m", "b2", builtin=True))


def test_component_kinds_come_from_one_table() -> None:
    assert KINDS == tuple(COMPONENT_HOOKS)
    host = load_host(entry_points=False)
    assert set(host.registries) == set(KINDS)
    for hook in COMPONENT_HOOKS.values():
        assert hasattr(host.pm.hook, hook), f"no hook spec for {hook}"


# ---------------------------------------------------------------- import-time escapes
@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    dist: FakeDist | None = None
    group: str = "harness"

    def load(self) -> Any:
        return metadata.EntryPoint(self.name, self.value, self.group).load()


_ids = itertools.count()


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str) -> str:
        name = f"harness_isolation_plugin_{next(_ids)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


GOOD = "from harness import hookimpl\n@hookimpl\ndef register_models(register):\n    register('ok-model', 'json:dumps', '')\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sys\nsys.exit(3)\n", "import failed: SystemExit: 3"),
        ("raise SystemExit\n", "import failed: SystemExit"),
        ("raise KeyboardInterrupt\n", "import failed: KeyboardInterrupt"),
        ("class Escape(BaseException):\n    pass\nraise Escape('out')\n", "import failed: Escape: out"),
    ],
    ids=["sys-exit", "bare-system-exit", "keyboard-interrupt", "base-exception"],
)
def test_base_exception_at_import_is_reported_and_the_plugin_dropped(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str],
    capsys: pytest.CaptureFixture[str], source: str, expected: str,
) -> None:
    from harness import cli

    exiting = make_module(source)
    good = make_module(GOOD)
    eps = [FakeEntryPoint("exiting", exiting, FakeDist("harness-exiting")),
           FakeEntryPoint("good", good, FakeDist("harness-good"))]
    monkeypatch.setattr(plugins_mod, "metadata",
                        SimpleNamespace(entry_points=lambda *, group: eps))
    host = load_host()
    assert host.records["exiting"].error == expected
    assert not host.records["exiting"].loaded
    assert host.get("model", "ok-model").plugin == "good"
    # And the command goes on.
    cli.main(["models", "--json"])
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == ["ok-model"]


def test_base_exception_at_import_is_fatal_in_strict_mode(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    eps = [FakeEntryPoint("exiting", make_module("import sys\nsys.exit(0)\n"), FakeDist("x"))]
    monkeypatch.setattr(plugins_mod, "metadata",
                        SimpleNamespace(entry_points=lambda *, group: eps))
    with pytest.raises(PluginError, match=r"plugin 'exiting'.*SystemExit: 0"):
        load_host()


# -------------------------------------------------------------------- notification hooks
class Flaky:
    """Raises from every notification hook, counting the calls."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls: list[str] = []

    @hookimpl
    def run_started(self, run_dir: str, config: dict[str, Any], environment: dict[str, Any]) -> None:
        self.calls.append("run_started")
        raise self.exc

    @hookimpl
    def step_logged(self, run_dir: str, record: dict[str, Any]) -> None:
        self.calls.append("step_logged")
        raise self.exc

    @hookimpl
    def run_finished(self, run_dir: str, metrics: dict[str, Any]) -> None:
        self.calls.append("run_finished")
        raise self.exc


class Steady:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def step_logged(self, run_dir: str, record: dict[str, Any]) -> None:
        self.calls.append(f"step {record['step']}")

    @hookimpl
    def run_finished(self, run_dir: str, metrics: dict[str, Any]) -> None:
        self.calls.append("finished")


@pytest.mark.parametrize("exc", [RuntimeError("logger down"), SystemExit(4)],
                         ids=["runtime-error", "system-exit"])
def test_a_raising_hook_is_reported_once_and_disabled_until_the_next_run(
    capsys: pytest.CaptureFixture[str], exc: BaseException
) -> None:
    flaky, steady = Flaky(exc), Steady()
    host = load_host({"flaky": flaky, "steady": steady}, entry_points=False)
    for step in (1, 2, 3):
        host.call_hook("step_logged", run_dir="r", record={"step": step})
    host.call_hook("run_finished", run_dir="r", metrics={})
    assert flaky.calls == ["step_logged", "run_finished"]
    assert steady.calls == ["step 1", "step 2", "step 3", "finished"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("warning: plugin 'flaky': hook step_logged failed: ")
    assert err[0].endswith("; it is disabled for the rest of this run")
    assert len(host.records["flaky"].warnings) == 2
    # A new run gives every hook a fresh chance.
    host.call_hook("run_started", run_dir="r2", config={}, environment={})
    host.call_hook("step_logged", run_dir="r2", record={"step": 1})
    assert flaky.calls[-2:] == ["run_started", "step_logged"]


def test_a_raising_hook_is_fatal_in_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    host = load_host({"flaky": Flaky(RuntimeError("logger down"))}, entry_points=False)
    with pytest.raises(PluginError, match=r"plugin 'flaky': hook step_logged failed: "
                                          r"RuntimeError: logger down") as info:
        host.call_hook("step_logged", run_dir="r", record={"step": 1})
    assert info.value.exit_code == 1  # the run failed while running


def test_ctrl_c_in_a_hook_is_not_swallowed() -> None:
    host = load_host({"flaky": Flaky(KeyboardInterrupt())}, entry_points=False)
    with pytest.raises(KeyboardInterrupt):
        host.call_hook("step_logged", run_dir="r", record={"step": 1})


def test_call_hook_checks_its_arguments() -> None:
    host = load_host(entry_points=False)
    with pytest.raises(ValueError, match="no hook called 'step_loged'"):
        host.call_hook("step_loged", run_dir="r", record={})
    with pytest.raises(TypeError, match="hook step_logged takes"):
        host.call_hook("step_logged", run_dir="r")


def test_a_run_survives_raising_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny run with a logger plugin that raises from every hook finishes and records."""
    from harness.run.build import resolve_config
    from harness.run.experiment import run_experiment

    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "example")  # if it is installed too
    example = importlib.import_module("harness_example_plugin")
    flaky, steady = Flaky(RuntimeError("logger down")), Steady()
    load_host({"example-in-process": example, "flaky": flaky, "steady": steady})
    config = resolve_config(
        model="tiny-ae", dataset="bumps", config_file=None, seed=0,
        sets=["train.steps=3", "train.batch_size=8", "train.log_every=1", "data.n_train=16",
              "data.n_test=8", "model.k=2", 'eval.protocols=["reconstruction"]',
              'eval.metrics=["mean-intensity"]'],
    )
    run_dir = run_experiment(config, tmp_path / "run")
    assert (run_dir / "metrics.json").is_file()
    assert flaky.calls == ["run_started", "step_logged", "run_finished"]
    assert steady.calls[-1] == "finished" and steady.calls.count("step 1") == 1
    assert len([c for c in steady.calls if c.startswith("step ")]) == 3
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning: plugin 'flaky'")]
    assert [w.split(":")[2].strip() for w in warnings] == [
        "hook run_started failed", "hook step_logged failed", "hook run_finished failed"]
