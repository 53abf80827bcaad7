"""harness.training.resources: glibc malloc thresholds set in-process, peak memory in the log and the
run summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.training import resources

GLIBC = resources._libc() is not None

# Three 8 MiB arrays allocated and freed together, 30 times, counting minor page faults.
# With glibc's adaptive defaults the freed 24 MiB at the heap top exceeds the trim threshold
# (twice the adapted mmap threshold) and is given back to the OS, then faulted in again on
# the next round; with the thresholds set it stays in the process and is reused.
FAULTS = """
import json, resource, sys
sys.path[:0] = {path!r}
from harness.training.resources import tune_malloc
done = tune_malloc() if {tune} else "defaults"
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    a = [np.ones(1 << 20) for _ in range(3)]  # 3 x 8 MiB, every page written
    del a
print(json.dumps([done, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]))
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    return env


def _faults(tune: bool) -> tuple[str, int]:
    code = FAULTS.format(path=sys.path, tune=tune)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=_clean_env()).stdout
    done, faults = json.loads(out)
    return done, faults


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only (Linux with glibc)")
def test_tune_malloc_stops_the_page_fault_churn() -> None:
    done, tuned = _faults(True)
    assert done.startswith("glibc mallopt M_MMAP_THRESHOLD=67108864 M_TRIM_THRESHOLD=1073741824")
    _, default = _faults(False)
    once = 3 * (8 << 20) // 4096  # pages of one round
    assert tuned < 2 * once  # faulted in once, then reused
    assert default > 5 * tuned  # measured here: 31 000 against 1 500


def test_tune_malloc_leaves_user_choices_alone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert resources.tune_malloc() == "left as set by the user (MALLOC_ARENA_MAX)"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096")
    assert resources.tune_malloc().startswith("left as set by the user")
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert resources.tune_malloc().startswith("not glibc's")


def test_tune_malloc_is_a_no_op_off_glibc(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(resources.sys, "platform", "darwin")
    assert resources.tune_malloc() == "not glibc: unchanged"


def test_peak_rss_grows_with_what_the_process_touched() -> None:
    code = (f"import sys; sys.path[:0] = {sys.path!r}\n"
            "from harness.training.resources import peak_memory\nimport numpy as np\n"
            "a = peak_memory()['peak_rss_mb']; b = np.ones(1 << 25)\n"
            "print(a, peak_memory('cpu')['peak_rss_mb'])")
    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("no getrusage on Windows")
    # Linux carries a process's peak RSS across exec: a child started straight from this
    # (large) test process would report the test process's peak. A shell in between forks
    # the child afresh, so it starts from its own.
    env = {**os.environ, "PY": sys.executable, "CODE": code}
    out = subprocess.run(["sh", "-c", '"$PY" -c "$CODE"; exit $?'], capture_output=True,
                         text=True, check=True, env=env).stdout.split()
    before, after = float(out[0]), float(out[1])
    # a 256 MiB array, every page written (less what the earlier peak already held)
    assert before > 1 and after - before >= 200


def test_peak_memory_in_log_records_and_the_run_summary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.configuration.run_config import resolve
    from harness.run.experiment import run_experiment

    config = resolve(model="ae", dataset="digits", config_file=None, seed=0,
                     sets=["train.steps=4", "train.log_every=2", "train.batch_size=32",
                           "model.arch=mlp", "model.hidden=8", "model.k=2"],
                     model_config_cls=__import__("harness_plugins.autoencoders.models",
                                                 fromlist=["AE"]).AE.Config)
    run_dir = run_experiment(config, tmp_path / "run", evaluate=False)
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["peak_rss_mb"] > 10 for r in records)  # torch alone is more than that
    training = json.loads((run_dir / "metrics.json").read_text())["training"]
    assert training["peak_rss_mb"] >= records[-1]["peak_rss_mb"]
