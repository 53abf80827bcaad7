"""Interruptions say what is saved and the one command that continues, whatever the phase:
real signals sent to a real ``harness`` subprocess."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cpu_subprocess_env

TINY = ["--set", "train.batch_size=16", "--set", "train.log_every=1",
        "--set", "data.n_train=40", "--set", "data.n_test=16", "--set", "model.latent_dim=32",
        "--set", "eval.interpolation.n_pairs=4", "--set", "eval.random-generation.gmm_components=2",
        "--set", 'eval.metrics=["gaussian-fit"]']


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = cpu_subprocess_env(HARNESS_LOAD_PLUGINS="", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


#: how long a test waits for an event before calling it a hang: never reached by a merely
#: slow (loaded) machine, where each wait simply lasts longer
HANG_GUARD_S = 1800


def _send_when(proc: subprocess.Popen[str], needle: str, sig: int,
               timeout: float = HANG_GUARD_S) -> str:
    """Read the output until a line contains ``needle``, send ``sig``, return all output."""
    assert proc.stdout is not None
    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=1.0):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            proc.send_signal(sig)
            rest, _ = proc.communicate(timeout=timeout)
            return "".join(seen) + rest
    proc.kill()
    pytest.fail(f"never saw {needle!r}:\n{''.join(seen)}")


@pytest.mark.slow
def test_sighup_during_training_checkpoints_and_names_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(["run", "--model", "vrrae", "--dataset", "bumps", "--out", str(out),
                   "--set", "train.steps=100000", *TINY])
    text = _send_when(proc, "/100000 total=", signal.SIGHUP)
    assert proc.returncode == 130, text
    assert "interrupted (SIGHUP) at step" in text and "checkpoint saved" in text
    assert f"continue with:\n  harness run --resume --out {out}" in text
    assert "Aborted" not in text and "Traceback" not in text
    assert list((out / "checkpoints").iterdir()), "no checkpoint was written"


@pytest.mark.slow
def test_ctrl_c_during_evaluation_names_harness_evaluate(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(["run", "--model", "vrrae", "--dataset", "bumps", "--out", str(out),
                   "--set", "train.steps=2", "--set", "eval.random-generation.n_samples=5000",
                   *TINY])
    text = _send_when(proc, "[eval] interpolation: ", signal.SIGINT)  # then 5000 samples
    assert proc.returncode == 130, text
    assert "weights are saved" in text
    assert f"continue with:\n  harness evaluate {out}" in text
    assert "Aborted" not in text and "Traceback" not in text
    assert (out / "model.safetensors").is_file() and not (out / "metrics.json").exists()
    # `harness report` on the folder says what to run instead of only refusing
    env = cpu_subprocess_env(HARNESS_LOAD_PLUGINS="")
    report = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(out)],
                            env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert report.returncode == 2 and f"run `harness evaluate {out}`" in report.stderr


def test_sigterm_outside_training_is_a_keyboard_interrupt() -> None:
    """In-process: the handler the CLI installs turns SIGTERM and SIGHUP into the Ctrl-C path
    (before, a SIGHUP outside the training loop killed the process with nothing said)."""
    from harness.training import stopsignal

    old = {s: signal.getsignal(s) for s in stopsignal.STOP_SIGNALS}
    try:
        stopsignal.interrupt_on_termination()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with pytest.raises(KeyboardInterrupt, match=signal.Signals(sig).name):
                os.kill(os.getpid(), sig)
                time.sleep(1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def test_the_cli_prints_the_command_of_the_phase(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import cli
    from harness.training import stopsignal

    def interrupted(*args: object, **kwargs: object) -> None:
        stopsignal.set_next_command("harness evaluate 'my run'", "the weights are saved")
        raise KeyboardInterrupt

    monkeypatch.setattr("harness.run.reevaluate.evaluate_run", interrupted)
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main(["evaluate", str(tmp_path)])
    finally:
        stopsignal.set_next_command("", "")
    err = capsys.readouterr().err
    assert exc.value.code == 130
    assert "Interrupted: the weights are saved; continue with:\n  harness evaluate 'my run'" in err
    assert "Aborted" not in err and "Traceback" not in err


def test_sigterm_to_a_benchmark_stops_its_running_run_and_starts_no_other(tmp_path: Path) -> None:
    """A signal sent to `harness benchmark` alone (``kill PID``, a batch system; not Ctrl-C,
    which reaches the children too) stops the running `harness run` (it checkpoints) and
    launches none of the queued runs; it used to wait for every queued run to finish."""
    import json

    from harness.benchmark.planned_run import run_status

    suite = tmp_path / "two.toml"
    suite.write_text('name = "two"\ndescription = "two runs"\ndatasets = ["bumps"]\n'
                     'models = ["ae", "vae"]\nseeds = 1\nprotocols = ["reconstruction"]\n'
                     'metrics = []\n')
    out = tmp_path / "bench"
    sets = [part for item in ("train.steps=100000", "train.batch_size=16", "train.log_every=1",
                              "data.n_train=40", "data.n_test=16")
            for part in ("--set", item)]
    env = cpu_subprocess_env(HARNESS_LOAD_PLUGINS="", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "benchmark", str(suite),
                             "--jobs", "1", *sets, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # the signal reaches the benchmark only
    log = out / "runs" / "bumps-ae-seed0.log"
    deadline = time.monotonic() + HANG_GUARD_S
    while not (log.is_file() and "/100000 total=" in log.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"the first run never trained:\n{proc.communicate()[0]}")
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, text
    assert ("Interrupted: finished runs are kept, stopped ones resume from their checkpoint; "
            f"continue with:\n  harness benchmark {suite} --budget smoke --jobs 1") in text
    assert f"--out {out}" in text and "Traceback" not in text
    record = json.loads((out / "benchmark.json").read_text())["runs"]["bumps-ae-seed0"]
    assert record["status"] == "interrupted" and record["returncode"] == 130
    assert "checkpoint saved" in log.read_text()
    assert run_status(out / "runs" / "bumps-ae-seed0") == "interrupted"  # no live owner
    assert not (out / "runs" / "bumps-vae-seed0").exists()  # the queued run never started
