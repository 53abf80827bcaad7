"""A missing dataset with no way to the hub fails in seconds, without HF_HUB_OFFLINE (issue 9,
item 8). Nothing here touches the network: ``HF_ENDPOINT`` points at a local port that refuses
connections, or at a local socket that accepts and never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness_plugins.datasets import _hf

BOUND_S = 15.0  # the hub retries took 26-37 s; the fix adds under a second (refused port)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A local endpoint that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _run_harness(tmp_path: Path, endpoint: str, dataset: str, offline: bool = False
                 ) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HARNESS_DEBUG")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"),
               HARNESS_DATA_ROOT=str(tmp_path / "data"))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    (tmp_path / "data").mkdir(exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--model", "ae", "--dataset", dataset,
         "--set", "train.steps=1", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    return proc, time.perf_counter() - start


def _check_message(err: str, dataset: str, data_root: Path, endpoint: str) -> None:
    assert err.startswith(f"dataset '{dataset}': "), err
    assert "Searched:\n  " in err and str(data_root / dataset) in err
    assert "\nFix: " in err and "data.root=DIR" in err
    assert f"the Hugging Face hub ({endpoint}) cannot be reached" in err
    assert "the local Hugging Face cache does not hold it" in err
    assert "Retrying" not in err and "Traceback" not in err


def test_missing_dataset_without_network_fails_fast_through_the_cli(tmp_path: Path) -> None:
    """The whole command: it takes about as long as with HF_HUB_OFFLINE=1 (the reference,
    measured in the same test, so that a loaded machine's slow start-up does not count)."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    reference, reference_s = _run_harness(tmp_path, endpoint, "cifar10", offline=True)
    assert reference.returncode == 2, reference.stderr
    proc, elapsed = _run_harness(tmp_path, endpoint, "cifar10")
    assert proc.returncode == 2, proc.stderr
    assert elapsed - reference_s < BOUND_S, f"took {elapsed:.1f} s, offline {reference_s:.1f} s"
    before, _, message = proc.stderr.partition("Error: ")
    # only the start-up progress line ("harness: loading dataset ...") comes before the error
    assert message and all(line.startswith("harness: ") for line in before.splitlines()), \
        proc.stderr
    _check_message(message, "cifar10", tmp_path / "data", endpoint)


# (fashion-mnist is left out: Debian's dataset-fashion-mnist may install it locally)
@pytest.mark.parametrize("dataset", ["cifar10", "mnist", "celeba"])
def test_every_hub_backed_loader_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str
) -> None:
    from harness.api import DataConfig
    from harness.host.plugins import load_host

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    loader = load_host().get("dataset", dataset).load()
    start = time.perf_counter()
    with pytest.raises(_hf.DatasetNotFound) as info:
        loader(DataConfig())
    assert time.perf_counter() - start < BOUND_S
    _check_message(str(info.value), dataset, tmp_path / "data", endpoint)


def test_a_hub_that_never_answers_is_given_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_server: str
) -> None:
    from harness_plugins.datasets import cifar10

    from harness.api import DataConfig

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HARNESS_HUB_TIMEOUT", "1")
    start = time.perf_counter()
    with pytest.raises(_hf.DatasetNotFound) as info:
        cifar10.load(DataConfig(root=str(tmp_path)))
    assert time.perf_counter() - start < BOUND_S
    assert f"the Hugging Face hub ({silent_server}) did not answer within 1 s" in str(info.value)


def test_probe_is_bounded_in_process(monkeypatch: pytest.MonkeyPatch, silent_server: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    start = time.perf_counter()
    why = _hf.hub_unreachable(timeout=0.5)
    assert time.perf_counter() - start < 3.0
    assert why == f"the Hugging Face hub ({silent_server}) did not answer within 0.5 s"


def test_any_http_answer_means_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 404 is an answer: the hub is there (then ``datasets`` decides)."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert _hf.hub_unreachable(timeout=5) is None
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("value", "expected"),
                         [("", 3.0), ("0.25", 0.25), ("0", 3.0), ("-1", 3.0), ("nan", 3.0),
                          ("inf", 3.0), ("soon", 3.0), ("10", 10.0)])
def test_hub_timeout_values(monkeypatch: pytest.MonkeyPatch, value: str, expected: float) -> None:
    monkeypatch.setenv("HARNESS_HUB_TIMEOUT", value)
    assert _hf.hub_timeout() == expected


def test_offline_mode_still_skips_the_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))

    def no_probe(timeout: float | None = None) -> str | None:
        raise AssertionError("the hub was probed in offline mode")

    monkeypatch.setattr(_hf, "hub_unreachable", no_probe)
    allowed, why = _hf.hf_allowed("someone/some-data")
    assert not allowed and "offline mode (HF_HUB_OFFLINE" in why
