"""The step logger's outputs: JSON-lines records on the log cadence, and progress that a
person can always see: a tqdm bar on a sized terminal, otherwise plain lines at a steady time
cadence (whatever ``train.log_every`` is, and on a terminal that reports 0 columns)."""

from __future__ import annotations

import io
import json
import os
import select
import sys
import types
from pathlib import Path

import pytest
from dist_toys import ToyVAE, make_config, make_splits

from harness.progress import Progress, terminal_columns
from harness.training import steplog
from harness.training.loop import seed_everything, train
from harness.training.steplog import StepLogger


class FakeClock:
    """Time the test sets by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_logger(tmp_path: Path, stream, clock, *, total: int, log_every: int,
                batch_size: int = 8) -> tuple[StepLogger, list[dict]]:
    records: list[dict] = []
    config = make_config(steps=total, batch_size=batch_size, log_every=log_every)
    acc = types.SimpleNamespace(is_main_process=True)
    logger = StepLogger(tmp_path, config, accelerator=acc, start=0, total=total,
                        batches_per_epoch=6, lr=lambda: 1e-3, on_log=records.append,
                        stream=stream, clock=clock)
    return logger, records


def test_plain_lines_come_every_minute_not_at_log_steps(tmp_path: Path) -> None:
    """Steps take 15 s; records every 7 steps; plain lines every 60 s (steps 4, 8, ...) and at
    the end, each with the mean loss and the throughput since the previous line."""
    clock, stream = FakeClock(), io.StringIO()
    logger, records = make_logger(tmp_path, stream, clock, total=18, log_every=7)
    with logger:
        for step in range(1, 19):
            clock.now = 15.0 * step
            logger.log(step, {"total": float(step), "rec": 2.0 * step}, 0.0)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["4/18", "8/18", "12/18", "16/18", "18/18"]
    # steps 5..8: mean total 6.5, mean rec 13; 4 steps of 8 samples in 60 s
    assert lines[1] == "step 8/18 total=6.5 rec=13 1 samples/s"
    assert lines[-1] == "step 18/18 total=17.5 rec=35 1 samples/s"  # steps 17, 18 in 30 s
    # the records keep their own cadence, in the file and through on_log
    written = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert written == records and [r["step"] for r in records] == [7, 14, 18]
    assert records[0]["loss"] == {"total": 4.0, "rec": 8.0} and records[0]["time"] == 105.0


def test_plain_lines_even_with_logging_off(tmp_path: Path, monkeypatch) -> None:
    """Through train(): stderr is a file, log_every=0; with a zero interval every step gets a
    line (before, plain lines were printed only at log steps, so never here)."""
    monkeypatch.setattr(steplog, "PLAIN_PROGRESS_EVERY_S", 0.0)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    seed_everything(0)
    model = ToyVAE.from_config(ToyVAE.Config(), make_splits().info)
    train(model, make_splits(), make_config(steps=5, batch_size=8, log_every=0), tmp_path)
    lines = [x for x in err.getvalue().splitlines() if x.startswith("step ")]
    assert [x.split()[1] for x in lines] == [f"{s}/5" for s in range(1, 6)]
    assert all("total=" in x and "rec=" in x and x.endswith("samples/s") for x in lines)
    assert not (tmp_path / "log.jsonl").read_text()  # logging off: no records


# ------------------------------------------------------------------------------ terminals
def _pty(columns: int):
    """A pseudo-terminal reporting ``columns`` columns: (writer file, reader fd)."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return os.fdopen(slave, "w"), master


def _drain(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def _progress_on_terminal(columns: int) -> str:
    stream, master = _pty(columns)
    try:
        progress = Progress(3, stream=stream, every_s=0.0)
        for i in range(3):
            progress.advance(line=lambda i=i: f"line {i + 1}")
        progress.close()
        stream.flush()
        return _drain(master)
    finally:
        stream.close()
        os.close(master)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_sized_terminal_gets_a_bar(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    shown = _progress_on_terminal(80)
    assert "3/3" in shown and "%|" in shown and "line" not in shown


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_terminal_reporting_zero_columns_gets_plain_lines(monkeypatch) -> None:
    """tqdm draws nothing at all on a 0-column terminal; progress must still show."""
    monkeypatch.delenv("COLUMNS", raising=False)
    shown = _progress_on_terminal(0)
    assert [x for x in shown.splitlines() if x.strip()] == ["line 1", "line 2", "line 3"]


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_columns_zero_overrides_the_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "0")
    shown = _progress_on_terminal(80)
    assert [x for x in shown.splitlines() if x.strip()] == ["line 1", "line 2", "line 3"]


def test_terminal_columns(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert terminal_columns(io.StringIO()) == 0  # not a terminal
    assert terminal_columns(object()) == 0  # not even a stream
    monkeypatch.setenv("COLUMNS", "120")
    assert terminal_columns(io.StringIO()) == 0  # COLUMNS never makes a file a terminal
