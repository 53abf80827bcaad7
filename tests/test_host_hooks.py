"""One way to call hooks: every hook goes through the Host, with one failure policy, and no
module but harness.host.plugins reaches into pluggy's manager."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import hookimpl
from harness.errors import PluginError
from harness.host.plugins import load_host

# every test here builds its own host: the process-wide one is reset before and after
pytestmark = pytest.mark.usefixtures("fresh_host")


class Suites:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def register_suites(self, register: Any) -> None:
        for name in self.names:
            register(name, {"name": name}, f"suite {name}")


class BrokenSuites:
    @hookimpl
    def register_suites(self, register: Any) -> None:
        register("half", {"name": "half"})
        raise RuntimeError("suites are down")


def test_suites_come_through_the_host_and_a_broken_plugin_is_named(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_STRICT_PLUGINS", raising=False)  # the tests' default is strict
    host = load_host({"good": Suites("s1", "s2"), "broken": BrokenSuites()}, entry_points=False)
    found = host.suites()
    assert found["s1"] == ({"name": "s1"}, "suite s1") and "s2" in found
    err = capsys.readouterr().err
    assert "warning: plugin 'broken': hook register_suites failed: RuntimeError: suites are down" in err
    assert "register_suites failed" in host.records["broken"].error
    assert host.records["good"].error is None


def test_strict_mode_makes_every_hook_failure_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STRICT_PLUGINS", "1")
    host = load_host({"broken": BrokenSuites()}, entry_points=False)
    with pytest.raises(PluginError, match="plugin 'broken': hook register_suites failed"):
        host.suites()

    class BrokenCommands:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            raise ValueError("no")

    host = load_host({"cmds": BrokenCommands()}, entry_points=False)
    with pytest.raises(PluginError, match="plugin 'cmds': hook register_commands failed"):
        host.add_commands(object())


def test_no_module_outside_plugins_reaches_into_the_plugin_manager() -> None:
    root = Path(harness.__file__).parent
    offenders = [f"{path.relative_to(root)}:{n}" for path in sorted(root.rglob("*.py"))
                 if path.relative_to(root).as_posix() != "host/plugins.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\bhost\.pm\b|\.pm\.hook\b", line)]
    assert offenders == []


class Figures:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @hookimpl
    def report_figures(self, dataset: str, runs: dict[str, str], folder: str,
                       register: Any) -> None:
        if self.fail:
            raise RuntimeError("no figure today")
        path = Path(folder) / f"{dataset}.png"
        path.write_bytes(b"png")
        register(f"{dataset}: {sorted(runs)}", path)


def test_report_figures_go_through_the_host_and_a_broken_plugin_only_loses_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.benchmark.figures import plugin_figures

    monkeypatch.delenv("HARNESS_STRICT_PLUGINS", raising=False)
    host = load_host({"good": Figures(), "bad": Figures(fail=True)}, entry_points=False)
    runs = tmp_path / "runs" / "bumps-ae-seed0"
    runs.mkdir(parents=True)
    (runs / "metrics.json").write_text("{}")
    state = {"suite": {"models": ["ae"]}, "runs": {"bumps-ae-seed0": {"dataset": "bumps", "model": "ae", "seed": 0,
                                         "phase": "final", "status": "done",
                                         "dir": "runs/bumps-ae-seed0"}}}
    folder = tmp_path / "figures"
    folder.mkdir()
    made = plugin_figures(host, state, tmp_path, folder)
    assert [(caption, path.name) for caption, path in made] == [("bumps: ['ae']", "bumps.png")]
    assert "plugin 'bad': hook report_figures failed: RuntimeError: no figure today" in \
        capsys.readouterr().err
