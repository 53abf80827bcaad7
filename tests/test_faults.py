"""Fault injection: a full disk (ENOSPC) in the middle of a write, and a kill (SIGKILL) in the
middle of a write. Afterwards no file under its real name is half-written, no pre-existing
result is lost, and the folder is resumable or restartable."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import TINY, assert_error_line, builtin_plugins_only, cli

from harness.rundir import atomic
from harness.rundir import checkpoints as ckpt
from harness.rundir import contents as runs

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(),
                                reason="finds the file behind a descriptor through /proc")

AE = ["run", "--model", "ae", *TINY]


@pytest.fixture(autouse=True)
def _builtin_plugins_only() -> Any:
    with builtin_plugins_only():
        yield


class _FullDisk:
    """A handle that writes the first half of what it is given, then fails as a full disk."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


class _OsWithFullDisk:
    """``os`` for harness.rundir.contents, whose ``fdopen`` hands out a :class:`_FullDisk` for the
    temporary file of ``target`` (so the real atomic writer runs, and the disk fills up)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.hits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, *args: Any, **kwargs: Any) -> Any:
        handle = os.fdopen(fd, *args, **kwargs)
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{self.target}."):
            self.hits += 1
            return _FullDisk(handle)
        return handle


def _no_temp_files(run: Path) -> None:
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
    assert not leftovers, leftovers


def test_disk_full_writing_the_config_leaves_a_restartable_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    fake = _OsWithFullDisk(runs.CONFIG_FILE)
    monkeypatch.setattr(atomic, "os", fake)
    res = cli(*AE, "--out", str(out))
    assert_error_line(res, 1, "the disk is full")
    assert fake.hits == 1
    assert not (out / runs.CONFIG_FILE).exists() and not (out / runs.LOCK_FILE).exists()
    _no_temp_files(out)
    monkeypatch.undo()
    res = cli(*AE, "--out", str(out))  # the same command, once there is space again
    assert res.code == 0, res.err


def test_disk_full_during_a_checkpoint_keeps_the_one_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    real = ckpt._write_json

    def write_json(path: Path, data: Any) -> None:
        if path.name == "trainer.json" and path.parent.name.endswith("step-0000004"):
            text = json.dumps(data)
            path.write_text(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(ckpt, "_write_json", write_json)
    res = cli(*AE, "--out", str(out))
    assert_error_line(res, 1, "the disk is full", "--resume")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-0000002"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-0000002"
    assert not (out / runs.WEIGHTS_FILE).exists() and not (out / runs.METRICS_FILE).exists()
    _no_temp_files(out)
    monkeypatch.undo()
    res = cli(*AE, "--out", str(out), "--resume")
    assert res.code == 0, res.err
    training = json.loads((out / runs.METRICS_FILE).read_text())["training"]
    assert (training["start_step"], training["steps"]) == (2, 4)


def test_disk_full_writing_metrics_loses_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    fake = _OsWithFullDisk(runs.METRICS_FILE)
    monkeypatch.setattr(atomic, "os", fake)
    res = cli(*AE, "--out", str(out))
    assert_error_line(res, 1, "the disk is full")
    assert (out / runs.WEIGHTS_FILE).is_file() and not (out / runs.METRICS_FILE).exists()
    _no_temp_files(out)
    monkeypatch.undo()
    assert cli(*AE, "--out", str(out), "--resume").code == 0
    before = (out / runs.METRICS_FILE).read_bytes()
    assert json.loads(before)["results"]
    # a re-evaluation that hits a full disk keeps the old metrics.json as it was
    monkeypatch.setattr(atomic, "os", _OsWithFullDisk(runs.METRICS_FILE))
    assert_error_line(cli("evaluate", str(out)), 1, "the disk is full")
    assert (out / runs.METRICS_FILE).read_bytes() == before
    _no_temp_files(out)


KILLER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    from harness.rundir import atomic

    target = sys.argv[1]

    class Killing:
        def __init__(self, handle):
            self.handle = handle
        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            os.fsync(self.handle.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.handle.close()

    class KillingOs:
        def __getattr__(self, name):
            return getattr(os, name)
        def fdopen(self, fd, *args, **kwargs):
            handle = os.fdopen(fd, *args, **kwargs)
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            return Killing(handle) if name.startswith("." + target + ".") else handle

    atomic.os = KillingOs()
    from harness.cli import main
    main(sys.argv[2:])
''')


def test_killed_while_writing_metrics_the_folder_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "HARNESS_LOAD_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-c", KILLER, runs.METRICS_FILE, *AE, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / runs.METRICS_FILE).exists()  # never half-written under its real name
    assert list(out.glob(".metrics.json.*.tmp"))  # the half-written temporary file
    assert (out / runs.LOCK_FILE).is_file()  # left by the dead process
    res = cli(*AE, "--out", str(out), "--resume")
    assert res.code == 0, res.err
    assert json.loads((out / runs.METRICS_FILE).read_text())["results"]
    assert not (out / runs.LOCK_FILE).exists()
    _no_temp_files(out)


def test_build_once_lets_one_process_build_and_the_others_wait(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """`harness benchmark --jobs 2` starts two runs that need the same trained extractor: the
    second waits for the first and loads its file instead of training a second copy. Driven
    by events, not sleeps: the builder finishes only once this process is seen waiting."""
    import threading
    import time

    from harness.api import build_once

    target = tmp_path / "cache" / "extractor.bin"
    builder = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
from harness.rundir.atomic import build_once, atomic_write_bytes
with build_once(Path({str(target)!r})) as todo:
    assert todo
    print("building", flush=True)
    sys.stdin.readline()  # until the test has seen the other process wait
    atomic_write_bytes(Path({str(target)!r}), b"weights")
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert builder.stdout is not None and builder.stdout.readline().strip() == "building"
    found: dict[str, object] = {}

    def waiter() -> None:
        with build_once(target, waiting="waiting for the builder") as todo:
            found.update(todo=todo, content=target.read_bytes() if target.is_file() else None)

    thread = threading.Thread(target=waiter)
    thread.start()
    guard = time.monotonic() + 600  # a hang guard only
    while "waiting for the builder" not in capsys.readouterr().err:
        assert thread.is_alive() and time.monotonic() < guard, found
        time.sleep(0.01)
    assert builder.stdin is not None
    builder.stdin.write("go\n")
    builder.stdin.close()
    thread.join()
    assert found == {"todo": False, "content": b"weights"}
    assert builder.wait() == 0
    # a builder killed mid-build leaves no lock behind: the next process builds
    target.unlink()
    killed = subprocess.Popen([sys.executable, "-c", f"""
import time
from pathlib import Path
from harness.rundir.atomic import build_once
with build_once(Path({str(target)!r})):
    print("holding", flush=True)
    time.sleep(3600)  # killed below once it holds the lock
"""], stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None and killed.stdout.readline().strip() == "holding"
    killed.kill()
    killed.wait(timeout=30)
    with build_once(target) as todo:
        assert todo is True
