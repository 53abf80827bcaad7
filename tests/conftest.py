"""Shared test set-up: no network, no writes outside tmp dirs, our own plugins strict."""

from __future__ import annotations

import os

# Set before anything imports huggingface libraries: offline mode makes a missing file an
# immediate error instead of ~25 s of hub retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Our own plugins must load cleanly: a broken built-in is an error, not a warning.
os.environ.setdefault("HARNESS_STRICT_PLUGINS", "1")

import pytest  # noqa: E402

#: Modules of quick in-process checks (configuration, data loaders, reports, executors'
#: bookkeeping: no training beyond a toy, no `harness run` subprocess). `python -m pytest -m
#: "not e2e"` runs only these, in under a minute on two loaded cores (docs/testing.md); every
#: other module is marked ``e2e``, so a new test file counts as end-to-end until it is shown
#: to be quick and listed here.
FAST_MODULES = frozenset({
    "test_benchmark_figures.py", "test_bumps_standardisation.py", "test_config.py",
    "test_code_shape.py", "test_data.py", "test_dataset_limits.py", "test_datasets.py", "test_datasets_files.py",
    "test_datasets_idx.py", "test_dependencies.py", "test_display.py", "test_executors.py",
    "test_figures.py", "test_host_hooks.py", "test_import_cycles.py", "test_import_floors.py", "test_presets.py",
    "test_protocols.py", "test_public_api.py", "test_renamed_components.py", "test_report_html.py",
    "test_rundir_layout.py", "test_runs_report.py", "test_steplog.py", "test_svd.py",
    "test_toxfile.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test outside :data:`FAST_MODULES`, and the ``slow``/``slurm`` ones
    inside it (``-m "not e2e"`` replaces the default ``-m``, which left those out)."""
    for item in items:
        if item.path.name not in FAST_MODULES or item.get_closest_marker("slow") \
                or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dataset and model caches go to a per-session temp dir, never to the user's home."""
    cache = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))


@pytest.fixture
def fresh_host():
    """Reset the process-wide plugin host before and after a test."""
    from harness.host import plugins

    plugins.reset_host()
    yield plugins
    plugins.reset_host()


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch):
    """Train on the CPU even on a machine with a GPU, for tests about CPU behaviour (bit-level
    resume equality, CPU process groups): ``ACCELERATE_USE_CPU=1``, which
    ``harness.training.loop.cpu_launch`` and Accelerate both honour, with Accelerate's process-wide
    state reset before and after (a GPU state left by an earlier test would clash)."""
    from accelerate.state import AcceleratorState, GradientState

    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def cpu_subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess meant to run CPU processes (gloo), whatever GPUs the
    machine has: no GPU visible to it."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", **extra}
