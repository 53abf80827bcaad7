"""Files and state: the atomic writer gives the umask's permissions, `harness samples`
replaces its export as a whole and takes the run lock, the final weights carry a checksum
that `evaluate` checks, a full disk reported by safetensors is named as a full disk, deeply
nested TOML and a garbage model_config.json are `Error:` lines, and a gzip'd IDX bomb is
refused from its header before it is inflated."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_error_line, builtin_plugins_only, cli, live_process

from harness.rundir import atomic

RUN = ["run", "--model", "ae", "--dataset", "digits", "--set", "train.steps=4",
       "--set", "train.batch_size=8", "--set", "data.n_train=32", "--set", "data.n_test=8",
       "--set", "train.checkpoint_every=2", "--set", 'eval.protocols=["random-generation"]',
       "--set", 'eval.metrics=["collapse"]', "--set", "eval.random-generation.n_samples=12",
       "--set", "eval.random-generation.gmm_components=2"]


@pytest.fixture(autouse=True)
def _builtins():  # type: ignore[no-untyped-def]
    with builtin_plugins_only():
        yield


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("files") / "run"
    with builtin_plugins_only():
        res = cli(*RUN, "--out", str(out))
    assert res.code == 0, res.err
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


# ------------------------------------------------------------------------ permissions
@pytest.mark.parametrize("mask, mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                     (0o002, 0o664, 0o775)])
def test_atomic_writes_get_the_umask_permissions(mask: int, mode: int, folder_mode: int,
                                                 tmp_path: Path) -> None:
    old = os.umask(mask)
    try:
        atomic.atomic_write_bytes(tmp_path / "a.bin", b"x")
        with atomic.atomic_path(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"y")
        with atomic.atomic_dir(tmp_path / "folder") as folder:
            (folder / "c").write_bytes(b"z")
    finally:
        os.umask(old)
    for name in ("a.bin", "b.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert (tmp_path / "folder").stat().st_mode & 0o777 == folder_mode


def test_a_run_writes_its_results_readable_by_others(finished: Path) -> None:
    # the test process's umask is the usual 022 (asserted, so the check means something)
    mask = os.umask(0o022)
    os.umask(mask)
    assert mask == 0o022
    for name in ("metrics.json", "config.toml", "model.safetensors", "model_config.json"):
        assert (finished / name).stat().st_mode & 0o777 == 0o644, name
    # the checkpoints' files too (safetensors writes 0600 of its own)
    files = [f for f in (finished / "checkpoints").rglob("*") if f.is_file()]
    assert any(f.suffix == ".safetensors" for f in files)
    assert {f.name: f.stat().st_mode & 0o777 for f in files} == {f.name: 0o644 for f in files}


# ------------------------------------------------------------------------ harness samples
def test_samples_with_fewer_images_replace_the_export(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    assert cli("samples", str(run)).code == 0
    folder = run / "samples" / "random-generation"
    assert len(list(folder.glob("*.png"))) == 12
    res = cli("samples", str(run), "--set", "eval.random-generation.n_samples=8")
    assert res.code == 0, res.err
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in range(8)]
    with np.load(run / "samples" / "random-generation.npz") as npz:
        assert npz["images"].shape[0] == 8
    assert not [p for p in run.iterdir() if p.name.startswith(".samples")]  # no debris


def test_samples_takes_the_run_lock(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    with live_process() as holder:
        (run / ".harness.lock").write_text(f"{holder.pid}@{os.uname().nodename}\n")
        res = cli("samples", str(run))
        assert_error_line(res, 2, f"in use by PID {holder.pid}")
        assert not (run / "samples").exists()


# ------------------------------------------------------------------------ final weights
def test_a_finite_bit_flip_in_the_final_weights_is_named(finished: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run = copy_of(finished, tmp_path)
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4] ^= 0x01  # the lowest mantissa bit of the last float32: still a finite number
    weights.write_bytes(bytes(data))
    assert all(bool(t.isfinite().all()) for t in load_file(str(weights)).values())
    res = cli("evaluate", str(run))
    assert_error_line(res, 2, str(weights), "SHA-256", "--resume")
    res = cli("run", "--resume", "--out", str(run))  # rewritten from the last checkpoint
    assert res.code == 0, res.err
    assert cli("evaluate", str(run)).code == 0


@pytest.mark.parametrize("garbage", [b"\x00\xffnot json", b"[1, 2]", b'{"config": 5}',
                                     b'{"config": {}, "weights_sha256": 7}'])
def test_a_garbage_model_config_is_named_by_evaluate(garbage: bytes, finished: Path,
                                                     tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    (run / "model_config.json").write_bytes(garbage)
    res = cli("evaluate", str(run))
    assert_error_line(res, 2, "model_config.json' is damaged", "--resume")


@pytest.mark.parametrize("damage", ["no model_config.json", "no weights_sha256",
                                    "forged description", "bit flip and no checksum"])
def test_the_weights_check_never_fails_open(damage: str, finished: Path, tmp_path: Path) -> None:
    """A description that is missing, lacks the checksum or describes another model is
    refused (it used to skip the check: exit 0 and metrics.json overwritten with a damaged
    model's numbers); the advice (`run --resume`) repairs the folder as written."""
    run = copy_of(finished, tmp_path)
    described = run / "model_config.json"
    doc = json.loads(described.read_text())
    if damage == "no model_config.json":
        described.unlink()
    elif damage == "no weights_sha256":
        del doc["weights_sha256"]
        described.write_text(json.dumps(doc))
    elif damage == "forged description":
        described.write_text('{"model": "vae", "config": {"k": 99}, "format": 1}')
    else:
        del doc["weights_sha256"]
        described.write_text(json.dumps(doc))
        data = bytearray((run / "model.safetensors").read_bytes())
        data[-4] ^= 0x01
        (run / "model.safetensors").write_bytes(bytes(data))
    before = (run / "metrics.json").read_bytes()
    res = cli("evaluate", str(run))
    assert_error_line(res, 2, "model_config.json", "--resume")
    assert (run / "metrics.json").read_bytes() == before
    assert cli("run", "--resume", "--out", str(run)).code == 0
    assert cli("evaluate", str(run)).code == 0


def test_a_description_of_the_same_model_with_other_settings_is_refused(
        finished: Path, tmp_path: Path) -> None:  # fmt: skip
    run = copy_of(finished, tmp_path)
    described = run / "model_config.json"
    doc = json.loads(described.read_text())
    setting = sorted(k for k, v in doc["config"].items() if type(v) is int)[0]
    doc["config"][setting] += 1
    described.write_text(json.dumps(doc))
    res = cli("evaluate", str(run))
    assert_error_line(res, 2, "does not describe the run's model", setting)


# ------------------------------------------------------------------------ full disk
SAFETENSORS_ENOSPC = ('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                      'message: "No space left on device" })')


def test_a_full_disk_reported_by_safetensors_is_a_full_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from safetensors import SafetensorError

    from harness.rundir import checkpoints as checkpoint

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError(SAFETENSORS_ENOSPC)

    monkeypatch.setattr(checkpoint, "save_model", full)
    res = cli(*RUN, "--out", str(tmp_path / "run"))
    assert_error_line(res, 1, "the disk is full")


def test_the_atomic_writer_turns_a_library_full_disk_into_enospc(tmp_path: Path) -> None:
    from safetensors import SafetensorError

    target = tmp_path / "w.safetensors"
    with pytest.raises(OSError) as caught, atomic.atomic_path(target):
        raise SafetensorError(SAFETENSORS_ENOSPC)
    assert caught.value.errno == 28 and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # no temporary file left


# ------------------------------------------------------------------------ nested input
def test_deeply_nested_toml_is_an_error_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("[train]\nsteps = " + "[" * 50000 + "]" * 50000 + "\n")
    res = cli("run", "--model", "ae", "--config", str(path), "--out", str(tmp_path / "r"))
    assert_error_line(res, 2, str(path), "too deeply")
    res = cli("run", "--model", "ae", "--set", "eval.protocols=" + "[" * 50000 + "]" * 50000,
              "--out", str(tmp_path / "r"))
    assert_error_line(res, 2, "eval.protocols", "too deeply")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("what", ["suite", "--executor-config"])
def test_deeply_nested_suite_and_executor_files_are_error_lines(what: str,
                                                                tmp_path: Path) -> None:
    """The --config path was fixed; a suite nested 5000 deep was still a RecursionError
    (an internal error): every user TOML file goes through the one reader."""
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    good = tmp_path / "good.toml"
    good.write_text('name = "s"\ndatasets = ["bumps"]\nmodels = ["ae"]\n')
    argv = (["benchmark", str(deep)] if what == "suite"
            else ["benchmark", str(good), "--executor-config", str(deep)])
    res = cli(*argv, "--out", str(tmp_path / "out"))
    assert_error_line(res, 2, f"{what} '{deep}'", "too deeply")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ gzip'd IDX bomb
def _gz_idx(path: Path, shape: tuple[int, ...], payload: int) -> Path:
    """A gzip'd IDX file whose header declares ``shape`` and which inflates to ``payload``
    zero bytes after the header (a bomb: megabytes of zeros compress to kilobytes)."""
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(header)
        block = bytes(1 << 20)
        for start in range(0, payload, len(block)):
            fh.write(block[: min(len(block), payload - start)])
    return path


def _peak(fn) -> tuple[BaseException, int]:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the test asserts its type
        caught = exc
    else:
        raise AssertionError("accepted")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return caught, peak


def test_an_idx_bomb_is_refused_from_its_header_before_inflating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from harness_plugins.datasets._common import DatasetTooLarge
    from harness_plugins.datasets.idx import read_idx

    monkeypatch.setenv("HARNESS_MAX_GUNZIP_BYTES", "64M")
    bomb = _gz_idx(tmp_path / "bomb-idx3-ubyte.gz", (100_000, 1000, 1000), 32 << 20)
    assert bomb.stat().st_size < 100_000  # 32 MiB of zeros in tens of kilobytes
    exc, peak = _peak(lambda: read_idx(bomb, 3))
    assert isinstance(exc, DatasetTooLarge) and "header declares" in str(exc)
    assert "HARNESS_MAX_GUNZIP_BYTES" in str(exc) and str(bomb) in str(exc)
    assert peak < 1 << 20  # nothing inflated: today's reader inflated all 32 MiB first


def test_an_idx_whose_header_lies_costs_at_most_what_it_declares(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from datasets_fixtures import write_idx
    from harness_plugins.datasets._common import CorruptDataset, DatasetTooLarge
    from harness_plugins.datasets.idx import read_idx, read_idx_pair

    liar = _gz_idx(tmp_path / "liar-idx1-ubyte.gz", (1000,), 32 << 20)
    exc, peak = _peak(lambda: read_idx(liar, 1))
    assert isinstance(exc, CorruptDataset) and "trailing data" in str(exc)
    assert peak < 8 << 20  # a block at a time, of the 32 MiB it inflates to
    monkeypatch.setenv("HARNESS_MAX_GUNZIP_BYTES", "8M")  # past the cap: too large
    exc, peak = _peak(lambda: read_idx(liar, 1))
    assert isinstance(exc, DatasetTooLarge) and "inflates to more than the 8 MiB" in str(exc)
    monkeypatch.delenv("HARNESS_MAX_GUNZIP_BYTES")
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "i-idx3-ubyte.gz", images)
    write_idx(tmp_path / "l-idx1-ubyte.gz", np.array([1, 7], dtype=np.uint8))
    x, y = read_idx_pair(tmp_path / "i-idx3-ubyte.gz", tmp_path / "l-idx1-ubyte.gz")
    assert np.array_equal(x[:, 0], images) and y.tolist() == [1, 7]
