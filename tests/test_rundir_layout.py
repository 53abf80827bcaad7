"""The run-directory layout: one object names every file of a run, and a real run writes
exactly those names."""

from __future__ import annotations

from pathlib import Path

from harness.rundir import contents as runs
from harness.rundir.layout import RESULT_FILES, RUN_FILES, RunLayout


def test_layout_names_every_file_of_a_run(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    assert layout.config == tmp_path / "config.toml"
    assert layout.log == tmp_path / "log.jsonl"
    assert layout.checkpoints == tmp_path / "checkpoints"
    assert layout.weights == tmp_path / "model.safetensors"
    assert layout.model_config == tmp_path / "model_config.json"
    assert layout.metrics == tmp_path / "metrics.json"
    assert layout.previous_metrics == tmp_path / "metrics.prev.json"
    assert layout.image("interpolation") == tmp_path / "images" / "interpolation.png"
    assert layout.samples == tmp_path / "samples"
    assert layout.lock == tmp_path / ".harness.lock"
    assert layout.environment == tmp_path / "environment.json"
    # every named file but the on-request samples export counts as "written by a run"
    named = {p.name for p in (layout.config, layout.log, layout.checkpoints, layout.weights,
                              layout.model_config, layout.metrics, layout.previous_metrics,
                              layout.images, layout.lock, layout.environment)}
    assert named == set(RUN_FILES)
    assert set(RESULT_FILES) == {"model.safetensors", "metrics.json"}


def test_runs_module_uses_the_layout(tmp_path: Path) -> None:
    """The run-directory checks read the same names: a folder holding only layout files is a
    run folder, one holding anything else is foreign."""
    layout = RunLayout(tmp_path)
    layout.log.write_text("")
    layout.environment.write_text("{}")
    state = runs.inspect_run_dir(tmp_path)
    assert state.is_run and state.foreign == []
    (tmp_path / "notes.txt").write_text("mine")
    assert runs.inspect_run_dir(tmp_path).foreign == ["notes.txt"]
    assert runs.RunLock(tmp_path).path == layout.lock


def test_a_component_name_never_leads_the_default_run_dir_out_of_its_root(tmp_path) -> None:
    """A plugin model named ``../../pwned`` (or ``plugin:name``) gets a run folder inside
    ``runs/``, not outside it."""
    from types import SimpleNamespace

    from harness.rundir import contents as runs

    for model in ("../../pwned", "plugin:name", "/abs", ".."):
        config = SimpleNamespace(model=model, dataset="bumps", seed=0)
        path = runs.default_run_dir(config, tmp_path / "runs")  # type: ignore[arg-type]
        assert path.parent == tmp_path / "runs"
        assert "/" not in path.name and not path.name.startswith(".")
