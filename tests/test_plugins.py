"""Plugin loading, in process: what a broken plugin does to the host (nothing, except being
reported and dropped), strict mode, the escape hatches, name conflicts, and meta-tests that
every hook is documented and exercised.

Entry points are faked by replacing ``harness.host.plugins.metadata`` with a stand-in whose
``entry_points`` returns :class:`FakeEntryPoint` objects; their ``load()`` is the real
``importlib.metadata.EntryPoint.load``, so imports (and import failures) are real. Plugin
modules are written to ``tmp_path`` and imported from there.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import hookimpl, hookspecs
from harness.errors import ComponentConflict, HarnessError, PluginError, UnknownComponent
from harness.host import plugins as plugins_mod
from harness.host.plugins import Host, load_host
from harness.host.registry import Component, Registry

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
EXAMPLE_PLUGIN_DIR = TESTS / "example_plugin"
HOOK_NAMES = sorted(
    name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "harness_spec")
)


# ----------------------------------------------------------------------------- scaffolding
@pytest.fixture(autouse=True)
def _clean_plugin_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts lenient (tox and conftest set strict mode), with no escape hatch set,
    and leaves no host behind."""
    for var in ("HARNESS_STRICT_PLUGINS", "HARNESS_LOAD_PLUGINS", "HARNESS_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins_mod.reset_host()
    yield
    plugins_mod.reset_host()


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


@dataclass
class FakeEntryPoint:
    """What ``harness.host.plugins`` reads from an entry point, with a real ``load()``."""

    name: str
    value: str
    dist: FakeDist | None = None
    group: str = "harness"

    def load(self) -> Any:
        return metadata.EntryPoint(self.name, self.value, self.group).load()


def use_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: Any) -> None:
    def entry_points(*, group: str) -> list[Any]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(plugins_mod, "metadata", SimpleNamespace(entry_points=entry_points))


_module_ids = itertools.count()


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``make_module(source) -> module name``: a module on sys.path, not yet imported."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str) -> str:
        name = f"harness_test_plugin_{next(_module_ids)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def model_plugin_source(*names: str) -> str:
    """Source of a plugin module registering models ``names`` with lazy factories."""
    lines = "\n".join(f"    register({n!r}, 'json:dumps', 'model {n}')" for n in names)
    return f"from harness import hookimpl\n\n@hookimpl\ndef register_models(register):\n{lines}\n"


class Models:
    """An in-process plugin registering the given models (factory: the given object)."""

    def __init__(self, *names: str, factory: Any = "json:dumps") -> None:
        self.names = names
        self.factory = factory

    @hookimpl
    def register_models(self, register: Any) -> None:
        for name in self.names:
            register(name, self.factory, f"model {name}")


class MisspeltHook:
    @hookimpl
    def register_model(self, register: Any) -> None:  # spec: register_models
        register("never", "json:dumps", "")

    @hookimpl
    def register_datasets(self, register: Any) -> None:
        register("typo-data", "json:dumps", "from a plugin that will be dropped")


class BadSignature:
    @hookimpl
    def register_models(self, registr: Any) -> None:  # spec: register
        registr("never", "json:dumps", "")


class Raises:
    @hookimpl
    def register_models(self, register: Any) -> None:
        register("half-done", "json:dumps", "registered before the failure")
        raise ValueError("nope")


class InvalidName:
    @hookimpl
    def register_metrics(self, register: Any) -> None:
        register("bad:name", "json:dumps", "")


def names(host: Host, kind: str) -> set[str]:
    return {c.name for c in host.registry(kind)}


# --------------------------------------------------------------------- in-process plugins
def test_good_plugin_registers_lazily() -> None:
    host = load_host(
        {"good": Models("m1", "m2"), "lazy": Models("m3", factory="no_such_mod:X")},
        entry_points=False,
    )
    assert names(host, "model") == {"m1", "m2", "m3"}
    record = host.records["good"]
    assert record.loaded and record.error is None
    assert record.hooks == ["register_models"]
    component = host.get("model", "m1")
    assert (component.plugin, component.description) == ("good", "model m1")
    assert component.load() is json.dumps
    # A factory that cannot be imported fails only when it is used, naming plugin and target.
    lazy = host.get("model", "m3")
    with pytest.raises(HarnessError, match=r"model 'm3' from plugin 'lazy' .*no_such_mod:X"):
        lazy.load()


def test_misspelt_hook_is_reported_and_plugin_dropped() -> None:
    host = load_host({"typo": MisspeltHook(), "good": Models("m1")}, entry_points=False)
    record = host.records["typo"]
    assert not record.loaded
    assert "register_model" in record.error and "unknown hook" in record.error
    assert "\n" not in record.error
    assert host.pm.get_plugin("typo") is None
    # The whole plugin is dropped, its correctly spelt hook included.
    assert "typo-data" not in names(host, "dataset")
    assert names(host, "model") == {"m1"}
    assert host.records["good"].loaded and host.records["good"].error is None


def test_bad_hook_signature_is_reported_and_plugin_dropped() -> None:
    host = load_host({"bad": BadSignature(), "good": Models("m1")}, entry_points=False)
    record = host.records["bad"]
    assert not record.loaded
    assert record.error.startswith("bad hook: PluginValidationError")
    assert "registr" in record.error and "\n" not in record.error
    assert host.pm.get_plugin("bad") is None
    assert names(host, "model") == {"m1"}


def test_hookimpl_may_take_fewer_arguments_than_the_spec() -> None:
    class NoArgs:
        @hookimpl
        def register_models(self) -> None:
            """pluggy accepts an implementation that ignores the spec's arguments."""

    host = load_host({"noargs": NoArgs(), "good": Models("m1")}, entry_points=False)
    assert host.records["noargs"].loaded and host.records["noargs"].error is None


def test_register_hook_raising_is_reported_and_its_components_removed() -> None:
    host = load_host({"raises": Raises(), "good": Models("m1")}, entry_points=False)
    record = host.records["raises"]
    assert record.error == "register_models failed: ValueError: nope"
    assert not record.loaded
    assert names(host, "model") == {"m1"}  # "half-done" went with its plugin


def test_invalid_component_name_is_reported() -> None:
    host = load_host({"invalid": InvalidName(), "good": Models("m1")}, entry_points=False)
    assert "invalid metric name 'bad:name'" in host.records["invalid"].error
    assert len(host.registry("metric")) == 0
    assert names(host, "model") == {"m1"}


def test_two_in_process_plugins_with_the_same_name() -> None:
    host = Host()
    host.register(Models("first-model"), "same")
    second = host.register(Models("second-model"), "same")
    host.collect_components()
    assert "already used" in second.error and not second.loaded
    # The first plugin of that name is untouched.
    assert host.records["same"].loaded and host.records["same"].error is None
    assert names(host, "model") == {"first-model"}
    assert [r.name for r in host.records.values()] == ["same", "same"]


# --------------------------------------------------------------------- component conflicts
def test_component_name_claimed_twice_is_resolved_with_plugin_prefix() -> None:
    host = load_host(
        {
            "a": Models("shared", "only-a", factory="json:dumps"),
            "b": Models("shared", "only-b", factory="json:loads"),
        },
        entry_points=False,
    )
    with pytest.raises(ComponentConflict) as info:
        host.get("model", "shared")
    message = str(info.value)
    assert "'a:shared'" in message and "'b:shared'" in message
    assert host.get("model", "a:shared").load() is json.dumps
    assert host.get("model", "b:shared").load() is json.loads
    # The conflict is reported against the later plugin, which still registers the rest.
    assert "a:shared" in host.records["b"].error
    assert host.records["a"].error is None
    assert {"only-a", "only-b"} <= names(host, "model")
    assert host.records["b"].loaded
    # Unknown plugin prefix: the usual "not known" message.
    with pytest.raises(UnknownComponent, match="model 'c:shared' is not known"):
        host.get("model", "c:shared")


def test_same_plugin_registering_a_name_twice_is_reported() -> None:
    host = load_host({"twice": Models("m", "m")}, entry_points=False)
    assert "registers model 'm' twice" in host.records["twice"].error
    assert host.get("model", "m").plugin == "twice"


# --------------------------------------------------------------------------- entry points
def test_import_failures_are_reported_with_distribution_and_version(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    raising = make_module("raise RuntimeError('boom at import')\n")
    good = make_module(model_plugin_source("ep-model"))
    use_entry_points(
        monkeypatch,
        FakeEntryPoint("raising", raising, FakeDist("harness-raising", "0.3")),
        FakeEntryPoint("missing", "harness_no_such_module_xyz", FakeDist("harness-missing", "2.0")),
        FakeEntryPoint("good", good, FakeDist("harness-good", "1.2")),
    )
    host = load_host()
    raising_rec = host.records["raising"]
    assert raising_rec.error == "import failed: RuntimeError: boom at import"
    assert (raising_rec.distribution, raising_rec.version) == ("harness-raising", "0.3")
    assert not raising_rec.loaded and not raising_rec.builtin
    assert "ModuleNotFoundError" in host.records["missing"].error
    assert "harness_no_such_module_xyz" in host.records["missing"].error
    assert host.records["good"].loaded and host.records["good"].error is None
    assert host.get("model", "ep-model").plugin == "good"
    row = host.records["raising"].as_dict()
    assert set(row) == {"name", "version", "distribution", "builtin", "hooks", "error", "warnings"}


def test_two_entry_points_with_the_same_name(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    first = make_module(model_plugin_source("from-first"))
    second = make_module(model_plugin_source("from-second"))
    use_entry_points(
        monkeypatch,
        FakeEntryPoint("dup", first, FakeDist("harness-first")),
        FakeEntryPoint("dup", second, FakeDist("harness-second")),
    )
    host = load_host()
    assert host.records["dup"].distribution == "harness-first" and host.records["dup"].loaded
    dropped = [r for r in host.records.values() if r.distribution == "harness-second"]
    assert len(dropped) == 1
    assert "'dup' is already used by harness-first" in dropped[0].error
    assert names(host, "model") == {"from-first"}
    assert second not in sys.modules  # dropped before it was even imported


def test_entry_point_and_in_process_plugin_with_the_same_name(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    installed = make_module(model_plugin_source("installed-model"))
    use_entry_points(monkeypatch, FakeEntryPoint("same", installed, FakeDist("harness-same")))
    host = load_host({"same": Models("in-process-model")})
    assert names(host, "model") == {"installed-model"}
    assert host.records["same"].distribution == "harness-same" and host.records["same"].loaded


def _fake_builtins_and_third_party(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    builtin = FakeDist(plugins_mod.BUILTIN_DISTRIBUTION, "0.1.0")
    use_entry_points(
        monkeypatch,
        FakeEntryPoint("third", make_module(model_plugin_source("third-model")), FakeDist("h3")),
        FakeEntryPoint("autoencoders", make_module(model_plugin_source("ae")), builtin),
        FakeEntryPoint("metrics", make_module(model_plugin_source("not-a-metric")), builtin),
        FakeEntryPoint("other", make_module(model_plugin_source("other-model")), FakeDist("h4")),
    )


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (None, {"autoencoders", "metrics", "third", "other"}),
        ("", {"autoencoders", "metrics"}),
        ("third", {"autoencoders", "metrics", "third"}),
        (" third , other ", {"autoencoders", "metrics", "third", "other"}),
        ("nothing-installed-by-that-name", {"autoencoders", "metrics"}),
        ("h3", {"autoencoders", "metrics", "third"}),  # a distribution name, as in llm
        ("H4", {"autoencoders", "metrics", "other"}),  # names compare as pip compares them
    ],
)
def test_load_plugins_selects_third_party_plugins_and_keeps_builtins(
    monkeypatch: pytest.MonkeyPatch,
    make_module: Callable[[str], str],
    load: str | None,
    expected: set[str],
) -> None:
    _fake_builtins_and_third_party(monkeypatch, make_module)
    if load is not None:
        monkeypatch.setenv("HARNESS_LOAD_PLUGINS", load)
    host = load_host()
    assert set(host.records) == expected
    assert all(host.records[n].builtin for n in ("autoencoders", "metrics"))
    assert all(r.loaded and r.error is None for r in host.records.values())


def test_disable_plugins_drops_builtins_and_third_party_alike(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    _fake_builtins_and_third_party(monkeypatch, make_module)
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "metrics,third")
    host = load_host()
    assert set(host.records) == {"autoencoders", "other"}
    assert names(host, "model") == {"ae", "other-model"}
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "h4")  # by distribution name
    assert set(load_host().records) == {"autoencoders", "metrics", "third"}


def test_disable_a_real_builtin_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "metrics")
    host = load_host()
    assert "metrics" not in host.records
    assert {"autoencoders", "datasets"} <= {n for n, r in host.records.items() if r.builtin}
    assert all(c.plugin != "metrics" for c in host.registry("metric"))


def test_builtins_load_before_third_party_plugins(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    """A third-party entry point cannot take a built-in plugin's name."""
    use_entry_points(
        monkeypatch,
        FakeEntryPoint("autoencoders", make_module(model_plugin_source("impostor")), FakeDist("x")),
        FakeEntryPoint(
            "autoencoders",
            make_module(model_plugin_source("ae")),
            FakeDist(plugins_mod.BUILTIN_DISTRIBUTION),
        ),
    )
    host = load_host()
    assert host.records["autoencoders"].builtin
    assert names(host, "model") == {"ae"}


# ----------------------------------------------------------------------------- strict mode
@pytest.mark.parametrize(
    "plugin",
    [MisspeltHook(), BadSignature(), Raises(), InvalidName()],
    ids=["misspelt-hook", "bad-signature", "register-raises", "invalid-name"],
)
def test_strict_mode_makes_a_broken_plugin_fatal(
    monkeypatch: pytest.MonkeyPatch, plugin: object
) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'broken'.*HARNESS_STRICT_PLUGINS"):
        load_host({"good": Models("m1"), "broken": plugin}, entry_points=False)


def test_strict_mode_import_failure(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    module = make_module("raise ImportError('needs libfoo')\n")
    use_entry_points(monkeypatch, FakeEntryPoint("needs-foo", module, FakeDist("harness-foo", "1")))
    with pytest.raises(PluginError, match=r"plugin 'needs-foo' \(harness-foo 1\).*libfoo"):
        load_host()


def test_strict_mode_duplicates_and_conflicts(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'b'.*'a:shared'.*'b:shared'"):
        load_host({"a": Models("shared"), "b": Models("shared")}, entry_points=False)
    host = Host()
    host.register(Models("x"), "same")
    with pytest.raises(PluginError, match="plugin 'same'.*already used"):
        host.register(Models("y"), "same")
    use_entry_points(
        monkeypatch,
        FakeEntryPoint("dup", make_module(model_plugin_source("one")), FakeDist("d1")),
        FakeEntryPoint("dup", make_module(model_plugin_source("two")), FakeDist("d2")),
    )
    with pytest.raises(PluginError, match=r"plugin 'dup' \(d2\).*already used by d1"):
        load_host()


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE"])
def test_strict_mode_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", value)
    assert plugins_mod.strict_mode()
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "0")
    assert not plugins_mod.strict_mode()


# --------------------------------------------------------------------------- unknown names
def _registry(kind: str, *component_names: str) -> Registry:
    registry = Registry(kind)
    for name in component_names:
        registry.add(Component(kind, name, "json:dumps", "", "p"))
    return registry


def test_unknown_name_message_suggests_close_names_and_lists_known_ones() -> None:
    registry = _registry("model", "ae", "vae", "vrrae", "diffusion")
    with pytest.raises(UnknownComponent) as info:
        registry.get("vrae")
    message = str(info.value)
    match = re.fullmatch(r"model 'vrae' is not known; did you mean (.+)\? Known: (.+)", message)
    assert match, message
    suggestions = re.findall(r"'([^']+)'", match.group(1))
    assert {"vae", "vrrae"} <= set(suggestions) <= {"ae", "vae", "vrrae"}
    assert match.group(2) == "ae, diffusion, vae, vrrae"


def test_unknown_name_message_exact() -> None:
    registry = _registry("dataset", "bumps", "cifar10", "mnist")
    with pytest.raises(UnknownComponent) as info:
        registry.get("cifar")
    assert str(info.value) == (
        "dataset 'cifar' is not known; did you mean 'cifar10'? Known: bumps, cifar10, mnist"
    )
    with pytest.raises(UnknownComponent) as info:
        registry.get("zzz")
    assert str(info.value) == "dataset 'zzz' is not known; Known: bumps, cifar10, mnist"


def test_unknown_name_from_the_host_of_real_builtins() -> None:
    host = load_host()
    with pytest.raises(UnknownComponent, match=r"^model 'vrae' is not known; did you mean .*'vae'"):
        host.get("model", "vrae")


# ------------------------------------------------------------------------- listing is light
def test_loading_and_listing_plugins_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import harness.host.plugins
        host = harness.host.plugins.get_host()
        rows = [r.as_dict() for r in host.records.values()]
        for kind in ("model", "dataset", "metric"):
            rows += [c.summary() for c in host.registry(kind)]
        heavy = sorted(m for m in ("torch", "torchvision", "accelerate", "datasets")
                       if m in sys.modules)
        print(json.dumps({"heavy": heavy, "records": sorted(host.records)}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert {"autoencoders", "datasets", "metrics"} <= set(result["records"])


# ------------------------------------------------------------------ command and run hooks
def test_register_commands_adds_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from harness import cli

    class Hello:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command(name="hello-from-plugin")
            @click.argument("who")
            def hello(who: str) -> None:
                """Say hello (added by a plugin)."""
                click.echo(f"hello {who}")

    load_host({"hello": Hello()}, entry_points=False)
    try:
        cli.main(["hello-from-plugin", "world"])
        assert capsys.readouterr().out == "hello world\n"
        assert "register_commands" in plugins_mod.get_host().records["hello"].hooks
    finally:
        cli.cli.commands.pop("hello-from-plugin", None)


def test_register_commands_failure_does_not_break_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness import cli

    class Broken:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            raise RuntimeError("no commands today")

    load_host({"broken-cli": Broken(), "good": Models("m1")}, entry_points=False)
    cli.main(["models", "--json"])
    out, err = capsys.readouterr()
    assert [m["name"] for m in json.loads(out)] == ["m1"]
    assert "broken-cli" in err and "no commands today" in err
    assert "no commands today" in plugins_mod.get_host().records["broken-cli"].error


def test_harness_plugins_reports_broken_plugins(
    monkeypatch: pytest.MonkeyPatch,
    make_module: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness import cli

    module = make_module("import harness_no_such_dependency\n")
    use_entry_points(
        monkeypatch, FakeEntryPoint("needs-dep", module, FakeDist("harness-dep", "0.2"))
    )
    load_host({"typo": MisspeltHook(), "good": Models("m1")})
    cli.main(["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"needs-dep", "typo", "good"}
    assert rows["needs-dep"]["version"] == "0.2"
    assert rows["needs-dep"]["distribution"] == "harness-dep"
    assert rows["needs-dep"]["error"] == (
        "import failed: ModuleNotFoundError: No module named 'harness_no_such_dependency'"
    )
    assert "register_model" in rows["typo"]["error"]
    assert rows["good"]["error"] is None and rows["good"]["hooks"] == ["register_models"]
    cli.main(["plugins"])
    text = capsys.readouterr().out
    assert "needs-dep 0.2" in text
    assert "error: import failed: ModuleNotFoundError" in text


class Recorder:
    """A logger plugin: what the lifecycle hooks see."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def run_started(
        self, run_dir: str, config: dict[str, Any], environment: dict[str, Any]
    ) -> None:
        self.calls.append(("run_started", {"run_dir": run_dir, "config": config}))

    @hookimpl
    def step_logged(self, run_dir: str, record: dict[str, Any]) -> None:
        self.calls.append(("step_logged", {"run_dir": run_dir, "record": record}))

    @hookimpl
    def run_finished(self, run_dir: str, metrics: dict[str, Any]) -> None:
        self.calls.append(("run_finished", {"run_dir": run_dir, "metrics": metrics}))


def test_lifecycle_hooks_see_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny run of the example plugin's model on bumps, with a recording logger plugin."""
    from harness.run.build import resolve_config
    from harness.run.experiment import run_experiment

    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "example")  # if it is installed too
    example = importlib.import_module("harness_example_plugin")
    recorder = Recorder()
    load_host({"example-in-process": example, "recorder": recorder})
    config = resolve_config(
        model="tiny-ae",
        dataset="bumps",
        config_file=None,
        sets=[
            "train.steps=3",
            "train.batch_size=8",
            "train.log_every=1",
            "data.n_train=16",
            "data.n_test=8",
            "model.k=2",
            # reconstruction only: the GMM of random generation costs seconds of imports
            'eval.protocols=["reconstruction"]',
            'eval.metrics=["mean-intensity"]',
        ],
        seed=0,
    )
    run_dir = run_experiment(config, tmp_path / "run")
    events = [name for name, _ in recorder.calls]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert events.count("run_started") == events.count("run_finished") == 1
    assert events.count("step_logged") >= 1
    assert all(call["run_dir"] == str(run_dir) for _, call in recorder.calls)
    assert recorder.calls[0][1]["config"]["run"]["model"] == "tiny-ae"
    finished = recorder.calls[-1][1]["metrics"]
    assert finished == json.loads((run_dir / "metrics.json").read_text())


# ------------------------------------------------------------------------------ meta-tests
def test_hookspecs_are_found() -> None:
    assert {
        "register_models",
        "register_datasets",
        "register_metrics",
        "register_commands",
        "run_started",
        "run_finished",
    } <= set(HOOK_NAMES)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = getattr(hookspecs, hook).__doc__
    assert doc and len(doc.strip()) > 20, f"hook {hook} needs a docstring saying what it is for"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_documented_in_the_plugin_guide(hook: str) -> None:
    guide = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert f"`{hook}" in guide, f"docs/plugins.md does not mention the hook {hook}"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_implemented_by_some_test_plugin(hook: str) -> None:
    pattern = re.compile(rf"def {re.escape(hook)}\(")
    implemented_in = [
        path.relative_to(REPO)
        for path in TESTS.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert implemented_in, f"no test plugin implements the hook {hook}"


def test_the_plugin_guide_example_is_the_example_plugin_code() -> None:
    """The plugin guide shows the example plugin's real code (which tox installs and
    tests): every line of its ``python`` block that follows the file name
    ``harness_example_plugin/__init__.py`` is a line of that file, in the same order."""
    guide = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    marker = "harness_example_plugin/__init__.py"
    assert marker in guide, f"docs/plugins.md should show {marker}"
    block = re.search(r"```python\n(.*?)```", guide[guide.index(marker) :], re.DOTALL)
    assert block, f"no ```python block after {marker} in docs/plugins.md"
    source = (EXAMPLE_PLUGIN_DIR / "harness_example_plugin" / "__init__.py").read_text()
    source_lines = iter(source.splitlines())
    shown = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(shown) >= 5
    for line in shown:
        assert any(line == real for real in source_lines), (
            f"docs/plugins.md line {line!r} is not (in this order) in {marker}"
        )
