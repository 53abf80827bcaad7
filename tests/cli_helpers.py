"""Running ``harness`` in-process for the error-path tests (test_errors, test_faults,
test_fuzz_cli)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass

from harness.cli import main

TINY = ["--set", "train.steps=4", "--set", "train.batch_size=8", "--set", "data.n_train=16",
        "--set", "data.n_test=8", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
        "--set", 'eval.protocols=["reconstruction"]']


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str) -> Result:
    """``harness ARGS`` in this process; stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def assert_error_line(res: Result, code: int, *needles: str) -> None:
    """Exit status ``code``, exactly one ``Error:`` line holding every needle, no traceback
    and no "internal error" (the CLI's net for exceptions nobody turned into a message)."""
    assert res.code == code, res.err
    assert "Traceback" not in res.err and "internal error" not in res.err, res.err
    line = [ln for ln in res.err.splitlines() if ln.startswith("Error: ")]
    assert len(line) == 1, res.err
    for needle in needles:
        assert needle in line[0], line[0]


@contextlib.contextmanager
def builtin_plugins_only():  # type: ignore[no-untyped-def]
    """Keep third-party plugins installed on the machine out of these tests."""
    import pytest

    from harness.host import plugins

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_LOAD_PLUGINS", "")
        plugins.reset_host()
        try:
            yield
        finally:
            plugins.reset_host()


@contextlib.contextmanager
def live_process():  # type: ignore[no-untyped-def]
    """A child process alive exactly as long as the ``with`` block (a lock's live owner): it
    blocks reading its stdin, and is killed and reaped when the block ends. A stand-in that
    sleeps N seconds would die under a loaded machine while the test still relies on it."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
