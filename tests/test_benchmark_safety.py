"""`harness benchmark` as safe as `harness run`: every bad suite, state or option is one
`Error:` line (exit 2) before anything runs, the benchmark directory is owned (lock, no user
file touched, no live run deleted), and sizes are bounded. No test here trains a model."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from cli_helpers import live_process

from harness.benchmark import directory as benchmark_dir
from harness.benchmark import planned_run as benchmark_run
from harness.benchmark import suite_runner as benchmark
from harness.benchmark.suite import MAX_SEEDS, Suite
from harness.cli import main
from harness.errors import ConfigError, HarnessError

GOOD = """
name = "s"
datasets = ["bumps"]
models = ["ae"]
set = ["train.steps=1"]
"""


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "internal error" not in err
    return lines[0]


@pytest.mark.parametrize("text, words", [
    ('name = "s"\ndatasets = ["bumps"\nmodels = ["ae"]\n', ["not valid TOML"]),
    (GOOD.replace("models = [\"ae\"]", 'models = ["ae"]\nseeds = "abc"'),
     ["'seeds' must be an integer", "'abc'"]),
    (GOOD.replace('name = "s"', "name = 5"), ["'name' must be a string", "5"]),
    (GOOD + "[budgets]\nsmoke = 5\n", ["[budgets.smoke] must be a table", "5"]),
    (GOOD.replace('datasets = ["bumps"]', 'datasets = "bumps"'),
     ["'datasets' must be a list of strings", "'bumps'"]),
    (GOOD + '[[claims]]\ntext = "t"\nmetric = "a/b"\nmodel = "ae"\nthan = "vae"\n',
     ["[[claims]] #1", "'than' must be a list of strings", "'vae'"]),
    (GOOD + "model_set = [\"x\"]\n", ["'model_set' must be a table"]),
    (GOOD + '[beta]\nmodels = ["ae"]\nvalues = ["abc"]\n', ["[beta] values", "'abc'",
                                                          "not a finite number"]),
    (GOOD.replace('models = ["ae"]', 'models = ["ae", "vae", "ae"]'),
     ["'models' lists ['ae'] more than once"]),
    (GOOD.replace('name = "s"', 'name = "../../x"'), ["cannot name a folder", "'../../x'"]),
    (GOOD + '[sweep]\nkey = "lr"\nmodels = ["ae"]\nvalues = [1, 2]\n',
     ["[sweep]: key must be section.key", "'lr'"]),
    (GOOD + '[sweep]\nkey = "train.lr"\nmodels = ["ae"]\nvalues = [1, 1]\n',
     ["lists a value twice"]),
])
def test_a_bad_suite_file_is_one_error_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: list[str]) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    line = _error(capsys, ["benchmark", str(suite), "--out", str(tmp_path / "out")])
    assert str(suite) in line
    for word in words:
        assert word in line
    assert not (tmp_path / "out").exists()


def test_a_binary_suite_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "bin.toml"
    suite.write_bytes(bytes(range(256)) * 4)
    line = _error(capsys, ["benchmark", str(suite), "--out", str(tmp_path / "out")])
    assert "is not UTF-8 text" in line and str(suite) in line


@pytest.mark.parametrize("option, words", [
    (["--seeds", "0"], ["--seeds must be a whole number from 1 to"]),
    (["--seeds", "-2"], ["--seeds must be a whole number from 1 to"]),
    (["--seeds", str(MAX_SEEDS + 1)], [f"from 1 to {MAX_SEEDS}", "MAX_SEEDS"]),
    (["--jobs", "0"], ["--jobs must be from 1 to", "HARNESS_MAX_JOBS"]),
    (["--jobs", "100000"], ["--jobs must be from 1 to", "cores", "HARNESS_MAX_JOBS"]),
    (["--set", "train.nosuchkey=1"], ["run 'bumps-ae-seed0'", "unknown key 'train.nosuchkey'",
                                      "nothing was run"]),
    (["--set", "models+=../../pwned"], ["cannot name a folder"]),
    (["--set", "seeds=abc"], ["--set seeds=N needs a whole number"]),
    (["--set", "train.batch_size=100000"], ["run 'bumps-ae-seed0'", "batch_size"]),
])
def test_bad_options_are_refused_before_any_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str],
        words: list[str]) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(GOOD)
    line = _error(capsys, ["benchmark", str(suite), "--out", str(tmp_path / "out"), *option])
    for word in words:
        assert word in line
    assert not (tmp_path / "out").exists()  # nothing written, so the fixed command works


def test_a_folder_with_the_users_files_is_refused_and_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(GOOD)
    user = tmp_path / "mine"
    (user / "figures").mkdir(parents=True)
    (user / "report.md").write_text("my report")
    (user / "notes.txt").write_text("my notes")
    line = _error(capsys, ["benchmark", str(suite), "--out", str(user)])
    assert "holds files a benchmark does not write ('notes.txt')" in line
    assert (user / "report.md").read_text() == "my report"
    assert sorted(p.name for p in user.iterdir()) == ["figures", "notes.txt", "report.md"]
    (user / "notes.txt").unlink()  # only names a benchmark writes, but no benchmark.json
    line = _error(capsys, ["benchmark", str(suite), "--out", str(user)])
    assert "is not a benchmark directory" in line and (user / "report.md").read_text() == \
        "my report"


@pytest.mark.parametrize("content", [b'{"suite": {"name": "s"}, "bud', b"[]", b"{}",
                                     bytes(range(256))])
def test_a_damaged_state_is_refused_with_the_way_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    out = tmp_path / "bench"
    (out / "runs").mkdir(parents=True)
    (out / "benchmark.json").write_bytes(content)
    line = _error(capsys, ["benchmark", "report", str(out)])
    assert "is damaged" in line and "mv " in line and "run the same harness benchmark" in line
    assert _error(capsys, ["benchmark", "status", str(out)]) == line  # one reader for all
    suite = tmp_path / "s.toml"
    suite.write_text(GOOD)
    with pytest.raises(HarnessError, match="is damaged"):
        benchmark.run_suite(benchmark.load_suite(str(suite)), out)
    assert (out / "benchmark.json").read_bytes() == content


def test_the_damaged_state_advice_works_as_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Following the advice (move benchmark.json aside, run the same command) used to leave
    the folder refused: the moved file was 'a file a benchmark does not write'."""
    import re
    import shlex

    suite = tmp_path / "s.toml"
    suite.write_text(GOOD.replace('"train.steps=1"', '"train.steps=1", "data.n_train=16", "train.batch_size=8", '
                                  '"data.n_test=8", \'eval.protocols=["reconstruction"]\''))
    out = tmp_path / "bench"
    command = ["benchmark", str(suite), "--out", str(out)]
    main(command)
    capsys.readouterr()
    (out / "benchmark.json").write_bytes(b'{"suite": {"name": "s"}, "bud')
    line = _error(capsys, ["benchmark", "status", str(out)])
    mv = shlex.split(re.search(r"\(mv ([^)]*)\)", line).group(1))
    os.rename(*mv)
    main(command)
    state = json.loads((out / "benchmark.json").read_text())
    assert state["runs"]["bumps-ae-seed0"]["status"] == "done"
    assert (out / "benchmark.json.damaged").is_file()


@pytest.fixture
def live_pid() -> int:
    with live_process() as proc:
        yield proc.pid


def test_a_second_benchmark_on_one_folder_is_refused(tmp_path: Path, live_pid: int) -> None:
    import platform

    (tmp_path / ".harness.lock").write_text(f"{live_pid}@{platform.node()}\n")
    suite = tmp_path.parent / f"{tmp_path.name}-s.toml"
    suite.write_text(GOOD)
    with pytest.raises(HarnessError, match=f"benchmark directory .* is in use by PID {live_pid}"):
        benchmark.run_suite(benchmark.load_suite(str(suite)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".harness.lock"]


def test_a_run_folder_held_by_a_live_run_is_never_deleted(tmp_path: Path, live_pid: int) -> None:
    import platform

    run_dir = tmp_path / "runs" / "bumps-ae-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text("[run]\nmodel = 'ae'\n")  # no checkpoint yet
    (run_dir / ".harness.lock").write_text(f"{live_pid}@{platform.node()}\n")
    spec = benchmark.RunSpec("bumps-ae-seed0", "bumps", "ae", 0, "final")
    rec = benchmark_run.run_one(spec, tmp_path, threads=1, resume=True)
    assert rec["status"] == "failed" and f"in use by PID {live_pid}" in rec["error"]
    assert "command" not in rec  # no harness run was started
    assert sorted(p.name for p in run_dir.iterdir()) == [".harness.lock", "config.toml"]


def _folder_with_runs(out: Path, suite: Suite, sets: list[str], *,
                      finished: bool = True) -> dict[str, object]:
    """``out`` as a benchmark leaves it: every planned run of ``suite`` with ``--set sets``
    finished (config.toml, metrics.json) or interrupted (config.toml, a checkpoint)."""
    from harness.host.plugins import get_host

    suite, run_sets = benchmark.apply_cli_sets(suite, sets)
    specs = benchmark.plan(suite, "smoke", [0], run_sets)
    configs = benchmark.check_plan(get_host(), suite, specs)
    for spec in specs:
        run_dir = out / "runs" / spec.id
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "config.toml").write_text(configs[spec.id].to_toml())
        (run_dir / ("metrics.json" if finished else "checkpoints/latest")).write_text("{}")
    return configs


def _kept_runs_check(out: Path, suite: Suite, sets: list[str], resume: bool = True) -> None:
    from harness.host.plugins import get_host

    suite, run_sets = benchmark.apply_cli_sets(suite, sets)
    specs = benchmark.plan(suite, "smoke", [0], run_sets)
    benchmark._check_kept_runs(out, specs, benchmark.check_plan(get_host(), suite, specs),
                               resume, get_host())


AE_ONLY = {"name": "x", "datasets": ["bumps"], "models": ["ae"]}


def test_a_folder_continues_with_the_same_overrides_however_written(tmp_path: Path) -> None:
    assert benchmark.normalise_sets(["train.lr=0.01", "train.lr = 0.01"]) == ["train.lr=0.01"]
    _folder_with_runs(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), ["train.lr=0.01"])
    _kept_runs_check(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"),
                     ["train.lr=1e-2", "train.lr = 0.01"])  # continues
    with pytest.raises(HarnessError, match=r"holds 1 run\(s\) made with other settings than "
                                           r"this command plans: bumps-ae-seed0 \(it was "
                                           r"trained with other settings: train.lr: 0.01 -> 0.1"):
        _kept_runs_check(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), ["train.lr=0.1"])


def test_a_suite_edit_that_leaves_the_kept_runs_alone_continues_the_folder(
        tmp_path: Path) -> None:
    """The check is per run: settings for a model (or a budget) these runs do not use
    change nothing they were trained with, so the folder continues; a change to theirs is
    refused, naming the run and the setting."""
    _folder_with_runs(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), [])
    _kept_runs_check(tmp_path, Suite.from_dict(
        {**AE_ONLY, "model_set": {"vae": ["train.lr=0.5"]},
         "budgets": {"paper": {"set": ["train.steps=7"]}}}, "x"), [])
    with pytest.raises(HarnessError, match=r"bumps-ae-seed0 .*train.steps: \d+ -> 7"):
        _kept_runs_check(tmp_path, Suite.from_dict(
            {**AE_ONLY, "budgets": {"smoke": {"set": ["train.steps=7"]}}}, "x"), [])


def test_an_interrupted_run_that_would_resume_is_held_to_the_plan(tmp_path: Path) -> None:
    """A resume continues with the settings saved in the run, so an interrupted run with a
    checkpoint is checked like a finished one; with --no-resume it starts afresh."""
    _folder_with_runs(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), [], finished=False)
    _kept_runs_check(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), [])
    with pytest.raises(HarnessError, match=r"it was started with other settings: train.lr"):
        _kept_runs_check(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), ["train.lr=0.5"])
    _kept_runs_check(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), ["train.lr=0.5"],
                     resume=False)  # nothing is kept
    (tmp_path / "runs" / "bumps-ae-seed0" / "checkpoints" / "latest").unlink()
    _kept_runs_check(tmp_path, Suite.from_dict(dict(AE_ONLY), "x"), ["train.lr=0.5"])


def test_an_edited_suite_is_not_mixed_into_an_old_folder(tmp_path: Path) -> None:
    data = {**AE_ONLY, "set": ["train.steps=1"]}
    old = Suite.from_dict(dict(data), "x")
    _folder_with_runs(tmp_path, old, [])
    (tmp_path / "benchmark.json").write_text(json.dumps(
        {"suite": benchmark._suite_record(old), "budget": "smoke", "seeds": [0], "sets": [],
         "plan": [], "runs": {}}))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    edited = Suite.from_dict({**data, "set": ["train.steps=2"]}, "x")
    with pytest.raises(HarnessError, match=r"bumps-ae-seed0 \(it was trained with other "
                                           r"settings: train.steps: 1 -> 2\)"):
        benchmark.run_suite(edited, tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_sweep_values_past_six_digits_get_their_own_runs() -> None:
    suite = Suite.from_dict({"name": "x", "datasets": ["bumps"], "models": ["vae"],
                             "sweep": {"key": "model.beta", "models": ["vae"],
                                       "values": [1e-3, 1.0000001e-3, 0.0]}}, "x")
    ids = [s.id for s in benchmark.plan(suite, "smoke", [0], []) if s.phase == "sweep"]
    assert ids == ["sweep-bumps-vae-beta0.001", "sweep-bumps-vae-beta0.0010000001",
                   "sweep-bumps-vae-beta0"]


def test_a_sweep_can_sweep_any_key_and_pick_the_highest(tmp_path: Path) -> None:
    suite = Suite.from_dict({"name": "x", "datasets": ["bumps"], "models": ["ae", "vae"],
                             "set": ["train.steps=1"],
                             "sweep": {"key": "train.lr", "models": ["ae"],
                                       "values": [1e-3, 1e-2], "select": "p/score",
                                       "rule": "highest", "set": ["data.validation=0.2"]}}, "x")
    specs = benchmark.plan(suite, "smoke", [0, 1], [])
    sweeps = [s for s in specs if s.phase == "sweep"]
    assert [s.id for s in sweeps] == ["sweep-bumps-ae-lr0.001", "sweep-bumps-ae-lr0.01"]
    assert all("data.validation=0.2" in s.sets for s in sweeps)
    assert not any("model.beta" in item or "data.validation" in item
                   for s in specs if s.phase == "final" for item in s.sets)
    from harness.host.plugins import get_host

    configs = benchmark.check_plan(get_host(), suite, specs)  # the real resolver, no training
    assert configs["sweep-bumps-ae-lr0.01"].train.lr == 0.01
    assert configs["sweep-bumps-ae-lr0.01"].data.validation == 0.2
    for spec, score in zip(sweeps, [3.0, 5.0], strict=True):
        (tmp_path / "runs" / spec.id).mkdir(parents=True)
        (tmp_path / "runs" / spec.id / "metrics.json").write_text(json.dumps(
            {"results": [{"protocol": "p", "metric": "score", "value": score}]}))
    choice = benchmark.choose_value(suite, specs, tmp_path, "bumps", "ae")
    assert choice["chosen"] == 0.01 and choice["key"] == "train.lr"
    assert choice["rule"].startswith("highest p/score")


def test_a_finished_run_is_checked_against_its_planned_config(tmp_path: Path) -> None:
    from harness.host.plugins import get_host
    from harness.run.build import resolve_config

    host = get_host()
    planned = resolve_config(model="ae", dataset="bumps", config_file=None,
                                    sets=["train.steps=3"], seed=0, host=host)
    other = resolve_config(model="ae", dataset="bumps", config_file=None,
                                  sets=["train.steps=5"], seed=0, host=host)
    run_dir = tmp_path / "runs" / "bumps-ae-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    (run_dir / "config.toml").write_text(planned.to_toml())
    assert benchmark_run.not_the_planned_run(run_dir, planned, host) is None
    (run_dir / "config.toml").write_text(other.to_toml())
    assert "train.steps: 5 -> 3" in benchmark_run.not_the_planned_run(run_dir, planned, host)
    spec = benchmark.RunSpec("bumps-ae-seed0", "bumps", "ae", 0, "final")
    rec = benchmark_run.run_one(spec, tmp_path, 1, True, planned, host)
    assert rec["status"] == "failed" and "not the planned one" in rec["error"]
    assert (run_dir / "metrics.json").read_text() == "{}"  # kept


def test_progress_says_k_of_n_running_eta_and_failures() -> None:
    stream = io.StringIO()
    progress = benchmark.Progress(3, stream)
    progress.started()
    progress.started()
    progress.finished("a", {"status": "done", "wall_s": 10.0}, jobs=2)
    progress.finished("b", {"status": "failed", "wall_s": 20.0, "error": "Error: boom"}, jobs=2)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/3 done, 1 running, 0 failed, ETA 10 s] a done"
    assert lines[1] == "[2/3 done, 0 running, 1 failed, ETA 15 s] b failed: Error: boom"


def test_a_resumed_benchmark_estimates_from_the_times_its_skipped_runs_recorded() -> None:
    stream = io.StringIO()
    progress = benchmark.Progress(4, stream)
    for run_id, rec in (("a", {"status": "done", "skipped": True, "wall_s": 300.0}),
                        ("b", {"status": "done", "skipped": True})):  # b: no time recorded
        progress.started()
        progress.finished(run_id, rec, jobs=1)
    assert stream.getvalue().splitlines() == [
        "[1/4 done, 0 running, 0 failed, ETA 15 min] a skipped (done)",
        "[2/4 done, 0 running, 0 failed, ETA 10 min] b skipped (done)"]


def test_a_benchmark_with_failed_runs_exits_1_and_says_how_to_continue(tmp_path: Path) -> None:
    state = {"suite": {"name": "x", "datasets": ["bumps"], "models": ["ae"]}, "budget": "smoke",
             "runs": {"bumps-ae-seed0": {"phase": "final", "status": "failed",
                                         "dataset": "bumps", "model": "ae", "seed": 0,
                                         "dir": "runs/bumps-ae-seed0"}},
             "plan": [{}], "failed": ["bumps-ae-seed0"]}
    out = io.StringIO()
    with pytest.raises(benchmark.BenchmarkFailed) as exc:
        benchmark.finish(state, tmp_path, stream=out)
    assert exc.value.exit_code == 1
    assert "1 of 1 planned runs failed (bumps-ae-seed0)" in str(exc.value)
    assert "run the same command again" in str(exc.value)
    assert "benchmark written to" in out.getvalue()


def test_jobs_bound_follows_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 1 <= benchmark.max_jobs() <= (os.cpu_count() or 1)
    monkeypatch.setenv("HARNESS_MAX_JOBS", "64")
    assert benchmark.check_jobs(64) == 64
    with pytest.raises(ConfigError):
        benchmark.check_jobs(65)


def test_the_folder_check_allows_only_what_a_benchmark_writes(tmp_path: Path) -> None:
    benchmark_dir.check_folder(tmp_path / "new")
    benchmark_dir.check_folder(tmp_path)  # empty
    (tmp_path / "runs").mkdir()
    (tmp_path / ".report.md.abc123.tmp").write_text("")  # a killed atomic write
    benchmark_dir.check_folder(tmp_path)
    (tmp_path / ".hidden").write_text("")
    with pytest.raises(HarnessError, match="'.hidden'"):
        benchmark_dir.check_folder(tmp_path)


def test_a_finished_benchmark_prints_terminal_tables_in_words(tmp_path: Path) -> None:
    """It ended with a markdown table of raw keys (random-generation/gaussian_fit_error_
    percent_std) as wide as every metric together; now one table per protocol, in words."""
    from harness.host.plugins import get_host

    runs_state = {}
    for seed in (0, 1):
        run = tmp_path / "runs" / f"bumps-vrrae-seed{seed}"
        run.mkdir(parents=True)
        results = [{"protocol": "reconstruction", "metric": "rec_error_percent",
                    "value": 5.0 + seed, "source": "protocol", "stamp": {}},
                   {"protocol": "random-generation", "metric": "gaussian_fit_error_percent",
                    "value": 3.0 + seed, "source": "gaussian-fit", "stamp": {}},
                   {"protocol": "random-generation", "metric": "gaussian_fit_error_percent_std",
                    "value": 0.9, "source": "gaussian-fit", "stamp": {}}]
        (run / "metrics.json").write_text(json.dumps(
            {"schema": 1, "run": {"model": "vrrae", "dataset": "bumps", "seed": seed},
             "results": results}))
        runs_state[run.name] = {"phase": "final", "status": "done", "dataset": "bumps",
                                "model": "vrrae", "seed": seed, "dir": f"runs/{run.name}"}
    state = {"suite": {"name": "x", "datasets": ["bumps"], "models": ["vrrae"]},
             "budget": "smoke", "runs": runs_state, "plan": [{}, {}], "failed": []}
    out = io.StringIO()
    benchmark.finish(state, tmp_path, stream=out, host=get_host())
    lines = out.getvalue().splitlines()
    assert "reconstruction" in lines and "random-generation" in lines
    assert not any("/" in line and "_percent" in line for line in lines), lines
    row = next(line for line in lines if line.startswith("vrrae ") and "± 0.71" in line)
    assert row.split()[:4] == ["vrrae", "bumps", "2", "3.5"]
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("benchmark written"))]
    assert max(len(line) for line in table) <= 100  # the folder's path is as long as it is
