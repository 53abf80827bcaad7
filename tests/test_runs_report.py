"""Run-directory files and the cross-run report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.evaluation import tables as report
from harness.host.plugins import get_host
from harness.rundir import contents as runs


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    runs.atomic_write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        runs.atomic_write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp files left


def test_prepare_run_dir_refuses_to_overwrite_and_to_resume_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    runs.prepare_run_dir(run, resume=False)
    (run / runs.CONFIG_FILE).write_text("[run]\n")
    # no checkpoint and no results: nothing to resume, and a fresh run starts it over
    with pytest.raises(HarnessError, match="nothing to resume.*without --resume"):
        runs.prepare_run_dir(run, resume=True)
    assert runs.prepare_run_dir(run, resume=False) == run
    (run / runs.METRICS_FILE).write_text("{}")
    with pytest.raises(HarnessError, match="already holds a finished run.*harness evaluate"):
        runs.prepare_run_dir(run, resume=False)
    with pytest.raises(HarnessError, match="holds no run"):
        runs.prepare_run_dir(tmp_path / "other", resume=True)


def _fake_run(root: Path, name: str, model: str, seed: int, rec: float, fid: float,
              n_samples: int = 1250) -> Path:
    run = root / name
    run.mkdir()
    doc = {
        "schema": 1,
        "run": {"model": model, "dataset": "mnist", "seed": seed},
        "results": [
            {"protocol": "reconstruction", "metric": "rec_error_percent", "value": rec,
             "source": "protocol", "stamp": {"split": "test", "seed": seed}},
            {"protocol": "random-generation", "metric": "fid_std", "value": rec / 10,
             "stamp": {"seed": seed}},
            {"protocol": "random-generation", "metric": "fid", "value": fid, "source": "fid",
             "stamp": {"n_samples": n_samples, "seed": seed}},
            {"protocol": "interpolation", "metric": "fid", "value": None, "error": "no weights",
             "stamp": {"seed": seed}},
        ],
    }
    (run / runs.METRICS_FILE).write_text(json.dumps(doc))
    return run


def test_report_means_and_stds_over_seeds(tmp_path: Path) -> None:
    dirs = [
        _fake_run(tmp_path, "a0", "vrrae", 0, 26.0, 38.0),
        _fake_run(tmp_path, "a1", "vrrae", 1, 28.0, 40.0),
        _fake_run(tmp_path, "b0", "ae", 0, 27.0, 41.0),
    ]
    rows = report.collect(dirs, get_host())
    rec = [r for r in rows if r["model"] == "vrrae" and r["metric"] == "rec_error_percent"][0]
    assert rec["mean"] == pytest.approx(27.0)
    assert rec["std"] == pytest.approx(2 ** 0.5)  # sample std of 26, 28
    assert rec["n"] == 2 and rec["seeds"] == [0, 1]
    assert not [r for r in rows if r["protocol"] == "interpolation"]  # errors are not numbers
    md = report.to_markdown(rows)
    assert "| vrrae | mnist | 27.00 ± 1.41 (n=2) |" in md.replace("39.00 ± 1.41 (n=2) | ", "").replace(
        "2.70 (n=2) | ", "")
    assert "| ae | mnist |" in md
    csv_text = report.to_csv(rows)
    assert csv_text.splitlines()[0] == (
        "model,dataset,config,protocol,metric,stamp,mean,std,n,seeds,values")
    assert rec["values"] == [[0, 26.0], [1, 28.0]]  # each run's number is kept
    assert any(line.endswith(",0 1,0:26.0 1:28.0") for line in csv_text.splitlines())
    assert json.loads(report.to_json(rows))[0]["n"] in (1, 2)


def test_report_warns_when_runs_repeat_a_seed_and_counts_a_folder_once(tmp_path: Path) -> None:
    from cli_helpers import cli

    a0 = _fake_run(tmp_path, "a0", "vrrae", 0, 26.0, 38.0)
    again = _fake_run(tmp_path, "a0-again", "vrrae", 0, 28.0, 40.0)
    b1 = _fake_run(tmp_path, "b1", "ae", 1, 27.0, 41.0)
    # the same folder twice (another spelling of its path) is one run, with no warning
    rows = report.collect([a0, tmp_path / "." / "a0", b1], get_host())
    assert {r["n"] for r in rows} == {1} and report.repeated_seeds(rows) == []
    rows = report.collect([a0, again, b1], get_host())
    assert [r["n"] for r in rows if r["model"] == "vrrae"] == [2, 2, 2]
    (line,) = report.repeated_seeds(rows)  # one line for the configuration, not per metric
    assert line.startswith("vrrae on mnist (config ") and "several runs have seed 0" in line
    assert line.endswith("(harness run --seed N)")
    res = cli("report", "--format", "markdown", str(a0), str(again), str(b1))
    assert res.code == 0 and "27.00 ± 1.41 (n=2)" in res.out, res.err
    assert "harness: warning: vrrae on mnist" in res.err


def test_report_says_which_runs_were_trained_in_other_numerical_environments(
        tmp_path: Path) -> None:
    """Two seeds at 2 threads and one at 1 round differently (a benchmark resumed with
    another --jobs did that): the report names the runs and what differs. A key that only
    some runs recorded (an older environment.json) is no difference."""
    from cli_helpers import cli

    dirs = [_fake_run(tmp_path, f"a{s}", "vrrae", s, 26.0 + s, 38.0) for s in range(3)]
    for seed, env in enumerate([
            {"torch_threads": 2, "device": "cpu", "packages": {"torch": "2.14.1"}},
            {"torch_threads": 2, "device": "cpu", "packages": {"torch": "2.14.1"},
             "cpu_capability": "AVX512"},
            {"torch_threads": 1, "device": "cpu", "packages": {"torch": "2.14.1"},
             "cpu_capability": "AVX512"}]):
        (dirs[seed] / runs.ENVIRONMENT_FILE).write_text(json.dumps(env))
    assert report.numerics(dirs[1]) == {"torch": "2.14.1", "device": "cpu",
                                        "cpu_capability": "AVX512", "torch_threads": 2}
    rows = report.collect(dirs, get_host())
    (line,) = report.mixed_environments(rows)  # one line for the configuration
    assert line.startswith("vrrae on mnist (config ")
    assert "(torch_threads=2: seeds 0, 1; torch_threads=1: seed 2)" in line
    assert report.mixed_environments(report.collect(dirs[:2], get_host())) == []
    res = cli("report", *map(str, dirs))
    assert res.code == 0 and "harness: warning: vrrae on mnist" in res.err, res.err


def test_report_never_averages_different_protocols(tmp_path: Path) -> None:
    dirs = [
        _fake_run(tmp_path, "a0", "vrrae", 0, 26.0, 38.0, n_samples=1250),
        _fake_run(tmp_path, "a1", "vrrae", 1, 26.0, 50.0, n_samples=100),
    ]
    fids = [r for r in report.collect(dirs, get_host()) if r["metric"] == "fid"]
    assert sorted(r["mean"] for r in fids) == [38.0, 50.0]
    assert all(r["n"] == 1 for r in fids)
    md = report.to_markdown(report.collect(dirs, get_host()))
    assert "random-generation: FID ↓ [" in md
    # a legend says what differs between the two columns, not only their hashes
    legend = md[md.index("Columns split by protocol stamp"):]
    assert "- random-generation/fid:" in legend
    assert "n_samples=1250" in legend and "n_samples=100" in legend
    assert "rec_error_percent" not in legend  # one stamp, one column: no legend entry


def test_report_never_averages_different_training_configs(tmp_path: Path) -> None:
    a0 = _fake_run(tmp_path, "a0", "vrrae", 0, 26.0, 38.0)
    a1 = _fake_run(tmp_path, "a1", "vrrae", 1, 30.0, 40.0)
    b2 = _fake_run(tmp_path, "b2", "vrrae", 2, 50.0, 60.0)
    for run, steps, seed in ((a0, 100, 0), (a1, 100, 1), (b2, 5, 2)):
        (run / runs.CONFIG_FILE).write_text(
            f'[run]\nmodel = "vrrae"\ndataset = "mnist"\nseed = {seed}\n[train]\nsteps = {steps}\n')
    rows = [r for r in report.collect([a0, a1, b2], get_host()) if r["metric"] == "rec_error_percent"]
    assert sorted((r["mean"], r["n"]) for r in rows) == [(28.0, 2), (50.0, 1)]
    md = report.to_markdown(report.collect([a0, a1, b2], get_host()))
    assert md.count("| vrrae [") == 2  # two configurations, two rows, told apart by hash
    # and a legend says what differs between them
    legend = md[md.index("Rows split by training configuration"):]
    assert "- vrrae on mnist:" in legend
    assert "train.steps=100" in legend and "train.steps=5" in legend
    assert "run.model" not in legend  # what is the same is not listed
    assert "- reconstruction: Reconstruction error (%) ↓: `reconstruction/rec_error_percent`" \
        in md


def test_a_per_run_spread_is_not_given_a_second_std(tmp_path: Path) -> None:
    dirs = [_fake_run(tmp_path, "a0", "vrrae", 0, 26.0, 38.0),
            _fake_run(tmp_path, "a1", "vrrae", 1, 28.0, 40.0)]
    md = report.to_markdown(report.collect(dirs, get_host()))
    assert "| 2.70 (n=2) |" in md  # the mean of fid_std over the seeds, no "± std" of it
    assert "27.00 ± 1.41 (n=2)" in md


def test_report_names_the_command_that_finishes_an_interrupted_run(tmp_path: Path) -> None:
    evaluating = tmp_path / "evaluating"
    evaluating.mkdir()
    (evaluating / runs.CONFIG_FILE).write_text('[run]\nmodel = "vrrae"\n')
    (evaluating / runs.WEIGHTS_FILE).write_bytes(b"weights")
    with pytest.raises(HarnessError, match=r"stopped during its evaluation.*`harness evaluate "
                       + str(evaluating).replace("\\", "\\\\") + "`"):
        report.collect([evaluating])
    training = tmp_path / "training"
    (training / runs.CHECKPOINT_DIR).mkdir(parents=True)
    (training / runs.CONFIG_FILE).write_text('[run]\nmodel = "vrrae"\n')
    with pytest.raises(HarnessError, match="stopped during training.*--resume --out"):
        report.collect([training])
    with pytest.raises(HarnessError, match="has no metrics.json"):
        report.collect([tmp_path])


def _wide_run(root: Path, name: str, model: str, seed: int, k: int, n_samples: int = 1250,
              kid: float = 0.0312) -> Path:
    """A run with every protocol and metric of the default evaluation (25 numbers) and a
    config.toml, like a real one."""
    run = root / name
    run.mkdir()
    metrics = ["fid", "kid", "kid_std", "precision", "recall", "density", "coverage",
               "authenticity", "memorised", "mean_intensity"]
    results = [{"protocol": "reconstruction", "metric": "rec_error_percent",
                "value": 57.0 + seed, "source": "protocol", "stamp": {"seed": seed}}]
    for protocol in ("random-generation", "interpolation"):
        for i, metric in enumerate(metrics):
            value = kid + seed / 1000 if metric == "kid" else 10.0 * i + seed
            results.append({"protocol": protocol, "metric": metric, "value": value,
                            "source": metric, "higher_is_better": False,
                            "stamp": {"n_samples": n_samples, "seed": seed}})
    doc = {"schema": 1, "run": {"model": model, "dataset": "digits", "seed": seed},
           "results": results}
    (run / runs.METRICS_FILE).write_text(json.dumps(doc))
    only_vrrae = "latent_dim = 200\n" if model == "vrrae" else ""  # a key vae does not have
    (run / runs.CONFIG_FILE).write_text(
        f'[run]\nmodel = "{model}"\nseed = {seed}\n[model]\nk = {k}\n{only_vrrae}'
        '[train]\nsteps = 20\n')
    return run


def test_text_report_fits_100_columns_and_names_what_differs_in_words(tmp_path: Path) -> None:
    """Two runs of the default protocols were 25 columns wide in markdown, KID read 0.03 ±
    0.00, and a vae trained with k=2 beside a vrrae with k=16 showed only config hashes."""
    from harness.evaluation.text_table import to_text

    dirs = [_wide_run(tmp_path, "vae0", "vae", 0, k=2), _wide_run(tmp_path, "vae1", "vae", 1, k=2),
            _wide_run(tmp_path, "vrrae0", "vrrae", 0, k=16),
            _wide_run(tmp_path, "vrrae-big", "vrrae", 1, k=16, n_samples=5000)]
    rows = report.collect(dirs, get_host())
    text = to_text(rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, text
    assert len(lines) > 20
    # significant digits, the spread over seeds beside the mean; the per-run kid_std folded in
    assert "0.0317 ± 0.00071" in text and "kid_std" not in text
    # the training settings that differ between rows, in words
    assert "  model.k: vae 2, vrrae 16" in text
    # a key only vrrae has, the same in its rows, differs between no rows that have it
    assert "latent_dim" not in text and "(absent)" not in text
    # a metric measured under two stamps: one column each, labelled with what differs
    assert "[n_samples=5000]" in text and "[n_samples=1250]" in text
    # every protocol has its block; a block too wide continues below
    for protocol in ("reconstruction", "random-generation", "interpolation"):
        assert protocol in lines
    assert "random-generation (continued)" in lines
    wide = to_text(rows, width=None)
    assert "random-generation (continued)" not in wide.splitlines()
    assert max(len(line) for line in wide.splitlines()) > 100


def test_report_command_prints_the_text_table_by_default(tmp_path: Path) -> None:
    from cli_helpers import cli

    dirs = [_wide_run(tmp_path, f"vae{s}", "vae", s, k=2) for s in range(2)]
    res = cli("report", *map(str, dirs))
    assert res.code == 0, res.err
    assert max(len(line) for line in res.out.splitlines()) <= 100
    row = next(line for line in res.out.splitlines() if line.startswith("vae "))
    assert row.split()[:3] == ["vae", "digits", "2"]  # model, dataset, n runs
    wide = cli("report", "--wide", *map(str, dirs))
    assert wide.code == 0 and max(len(line) for line in wide.out.splitlines()) > 100
