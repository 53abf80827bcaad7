"""The ``harness`` command line.

Listing commands only read plugin metadata: they never import torch, so they answer fast.
Errors the user can fix (unknown names, bad config keys, missing files) are printed as one
``Error: ...`` line without a traceback and exit with status 2; a run that fails while
training (e.g. a non-finite loss, a full disk) exits with status 1; Ctrl-C exits with 130.
Anything else that escapes is reported as ``Error: internal error: ...`` (status 1), never as
a traceback; ``HARNESS_DEBUG=1`` prints the traceback too.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

import click

from harness import __version__
from harness.errors import HarnessError, env_flag, one_line
from harness.host.plugins import get_host
from harness.training.resources import tune_malloc
from harness.training.stopsignal import interrupt_on_termination, next_command, set_next_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def cli() -> None:
    """Benchmark generative autoencoders under fixed, recorded protocols."""


# ------------------------------------------------------------------------------- listings
@cli.command(name="plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def plugins_cmd(show_all: bool, as_json: bool) -> None:
    """List installed plugins: name, version, hooks, built-in?, error."""
    host = get_host()
    rows = [r.as_dict() for r in host.records.values() if show_all or not r.builtin or r.error
            or r.warnings]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No third-party plugins installed (use --all to list the built-in ones).")
        return
    for row in rows:
        tag = " (built-in)" if row["builtin"] else ""
        click.echo(f"{row['name']} {row['version'] or ''}{tag}".rstrip())
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        if row["error"]:
            click.echo(f"  error: {row['error']}")
        for warning in row["warnings"]:
            click.echo(f"  warning: {warning}")


def _component_listing(kind: str, as_json: bool) -> None:
    registry = get_host().registry(kind)
    rows = [c.summary() for c in registry]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for row in rows:
        tag = " (default)" if row["default"] else ""
        click.echo(f"{row['name']:<{width}}  {row['description']}  [{row['plugin']}]{tag}")


@cli.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def models_cmd(as_json: bool) -> None:
    """List the registered models."""
    _component_listing("model", as_json)


@cli.command(name="datasets")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def datasets_cmd(as_json: bool) -> None:
    """List the registered datasets."""
    _component_listing("dataset", as_json)


@cli.command(name="protocols")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def protocols_cmd(as_json: bool) -> None:
    """List the registered evaluation protocols ("default": run when eval.protocols is empty)."""
    _component_listing("protocol", as_json)


@cli.command(name="metrics")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def metrics_cmd(as_json: bool) -> None:
    """List the registered metrics."""
    _component_listing("metric", as_json)


# ----------------------------------------------------------------------------------- runs
@cli.command(name="run")
@click.option("--model", "-m", help="Model name (see `harness models`).")
@click.option("--dataset", "-d",
              help="Dataset name (see `harness datasets`); default: the one a plugin marks "
                   "(default).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="A TOML config, e.g. the config.toml of an earlier run.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value, e.g. --set train.steps=500 (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed for init, data order and noise.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/MODEL-DATASET-seedN-TIMESTAMP).")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out from its last checkpoint. The run's "
                   "original options may be repeated; train.lr, train.grad_clip and "
                   "train.steps/epochs may change.")
@click.option("--no-eval", is_flag=True, help="Train only; evaluate later with `harness evaluate`.")
@click.option("--save-samples", is_flag=True,
              help="Also export the scored images (.npz + PNG) and the metrics' reference "
                   "statistics into RUN_DIR/samples/, to re-score them with other tools.")
def run_cmd(model: str | None, dataset: str | None, config_file: str | None,
            sets: tuple[str, ...], seed: int | None, out: str | None, resume: bool,
            no_eval: bool, save_samples: bool) -> None:
    """Train a model, evaluate it and write a run directory."""
    tune_malloc()  # glibc malloc thresholds, before torch allocates (harness.training.resources)
    from harness.run.build import resolve_config
    from harness.run.experiment import run_experiment
    from harness.run.resume import resume_config
    from harness.training.slurm_launch import adopt_srun_rendezvous

    adopt_srun_rendezvous()  # `srun -n N harness run`: N processes, one run

    if resume:
        if not out:
            raise HarnessError("--resume needs --out DIR: the directory of the run to continue")
        plan = resume_config(out, model=model, dataset=dataset, config_file=config_file,
                                    sets=list(sets), seed=seed)
        run_dir = run_experiment(plan, out, resume=True, evaluate=not no_eval,
                                        save_samples=save_samples)
    else:
        config = resolve_config(model=model, dataset=dataset, config_file=config_file,
                                       sets=list(sets), seed=seed)
        run_dir = run_experiment(config, out, resume=False, evaluate=not no_eval,
                                        save_samples=save_samples)
    _print_summary(run_dir)


@cli.command(name="evaluate")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--set", "sets", multiple=True, metavar="eval.KEY=VALUE",
              help="Override an eval setting, e.g. --set eval.random-generation.n_samples=500.")
def evaluate_cmd(run_dir: str, sets: tuple[str, ...]) -> None:
    """Re-evaluate a saved run and rewrite its metrics.json."""
    tune_malloc()
    from harness.run.reevaluate import evaluate_run
    from harness.rundir import contents

    with contents.RunLock(Path(run_dir)):
        evaluate_run(run_dir, list(sets))
    _print_summary(Path(run_dir))


@cli.command(name="samples")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--set", "sets", multiple=True, metavar="eval.KEY=VALUE",
              help="Override an eval setting for this export only.")
def samples_cmd(run_dir: str, sets: tuple[str, ...]) -> None:
    """Export what the protocols score (images as .npz + PNG, the metrics' reference
    statistics) into RUN_DIR/samples/, without touching metrics.json."""
    from harness.run.reevaluate import evaluate_run
    from harness.rundir import contents
    from harness.rundir.layout import RunLayout

    with contents.RunLock(Path(run_dir)):  # not while a resume trains, nor two exports at once
        evaluate_run(run_dir, list(sets), save_samples=True, write_metrics=False)
    click.echo(f"samples written to {RunLayout(run_dir).samples}")


@cli.command(name="report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "csv", "json"]),
              default="text", show_default=True,
              help="text: one table per protocol that fits 100 columns; markdown: every "
                   "column side by side, with the raw keys; csv, json: every number.")
@click.option("--wide", is_flag=True, help="text: every column of a protocol in one table, "
              "however wide.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file.")
def report_cmd(run_dirs: tuple[str, ...], fmt: str, wide: bool, output: str | None) -> None:
    """Table of results across runs: mean ± std over seeds, per protocol."""
    from harness.evaluation import tables
    from harness.evaluation.text_table import to_text
    from harness.rundir import contents

    rows = tables.collect(run_dirs, get_host())
    for line in tables.repeated_seeds(rows) + tables.mixed_environments(rows):
        click.echo(f"harness: warning: {line}", err=True)
    if fmt == "text":
        text = to_text(rows, width=None if wide else 100)
    else:
        text = {"markdown": tables.to_markdown, "csv": tables.to_csv,
                "json": tables.to_json}[fmt](rows)
    if output:
        contents.atomic_write_text(output, text)
    else:
        click.echo(text, nl=False)


@cli.command(name="diff")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--strict", is_flag=True,
              help="Count training-configuration and environment differences too.")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def diff_cmd(a: str, b: str, strict: bool, as_json: bool) -> None:
    """Whether two results (runs, benchmark folders, exports) are comparable, and if not why,
    most important first. Exit 0: comparable, 1: not, 2: bad input (docs/results.md)."""
    from harness.results import diff, documents

    host = get_host()
    found = diff.compare(documents.load(a, host), documents.load(b, host),
                         labels=(f"A = {a}", f"B = {b}"), strict=strict)
    click.echo(json.dumps(found.as_dict(), indent=2) if as_json else found.text())
    sys.exit(0 if found.comparable else 1)


@cli.command(name="export")
@click.argument("sources", nargs=-1, required=True, metavar="RUN_OR_BENCHMARK...")
@click.option("--out", required=True, type=click.Path(), help="A new folder.")
@click.option("--lab", default=None, help="Who produced the results (default: the host name).")
@click.option("--push-to-hub", "repo", default=None, metavar="REPO",
              help="Then upload the folder as a Hugging Face dataset repository.")
@click.option("--private", is_flag=True, help="With --push-to-hub: a private repository.")
def export_cmd(sources: tuple[str, ...], out: str, lab: str | None, repo: str | None,
               private: bool) -> None:
    """Write runs' or benchmarks' results as a Hugging Face dataset folder (parquet + card)
    and plain JSON (docs/results.md)."""
    from harness.results import export

    if repo:
        export.hub_api()
    docs = export.export(list(sources), out, lab=lab, host=get_host())
    click.echo(f"exported {sum(len(d['entries']) for d in docs)} results of {len(docs)} "
               f"source(s) to {out} ({export.DATA_FILE}, results.json, README.md)")
    if repo:
        click.echo(f"uploaded: {export.push_to_hub(out, repo, private=private)}")


@cli.command(name="leaderboard")
@click.argument("sources", nargs=-1, required=True, metavar="DIR_OR_FILES...")
@click.option("--out", required=True, type=click.Path(), help="The site folder.")
def leaderboard_cmd(sources: tuple[str, ...], out: str) -> None:
    """One static HTML page (and Markdown) ranking models per task from exported results,
    comparable ones only; the others listed with the reason (docs/results.md)."""
    from harness.results import leaderboard

    boards = leaderboard.write(list(sources), out, get_host())
    split = sum(1 for b in boards if b["excluded"])
    click.echo(f"leaderboard written: {Path(out) / leaderboard.PAGE_FILE} (and "
               f"{leaderboard.MARKDOWN_FILE}): {len(boards)} task(s), {split} with results "
               "that are not comparable with the ranking")


def _slurm_options(fn: Any) -> Any:
    """The ``--executor`` options of ``harness benchmark`` (harness.benchmark.executors)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "slurm"]), default=None,
                     help="Where the runs execute: this machine's process pool (default) or "
                          "a Slurm cluster, one job-array element per run."),
        click.option("--executor-config", type=click.Path(dir_okay=False, exists=True),
                     default=None, help="A TOML file with [executor] name and [slurm] options "
                                        "(the command line overrides it)."),
        click.option("--partition", default=None, help="Slurm partition."),
        click.option("--time-limit", "time", type=int, default=None,
                     help="Slurm time limit per run, minutes (default 60)."),
        click.option("--gpus", type=int, default=None, help="GPUs per run (default 0)."),
        click.option("--cpus", type=int, default=None,
                     help="CPUs per run (default 1; also its thread count)."),
        click.option("--mem", default=None, help="Memory per run, e.g. 8G."),
        click.option("--array-parallelism", type=int, default=None,
                     help="Runs of the job array at once (default 64)."),
        click.option("--sbatch", multiple=True, metavar="--OPTION[=VALUE]",
                     help="An extra sbatch option, e.g. --sbatch=--qos=low (repeatable)."),
        click.option("--max-requeues", type=int, default=None,
                     help="Resubmissions of a run the cluster killed (default 3)."),
        click.option("--wait/--no-wait", default=None,
                     help="Wait for the jobs with live progress (default), or return once "
                          "submitted."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command(name="benchmark")
@click.argument("args", nargs=-1, metavar="SUITE | report DIR | status DIR")
@click.option("--list", "list_suites", is_flag=True, help="List the suites and exit.")
@click.option("--budget", type=click.Choice(["smoke", "cpu", "paper"]), default="smoke",
              show_default=True, help="Scale of steps and sample counts (written in every table).")
@click.option("--seeds", type=int, default=None, help="Number of seeds (default: the suite's).")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Runs at once; each gets cores // jobs CPU threads.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A run override (section.key=value) for every run, or models+=NAME / "
                   "datasets+=NAME to extend the suite (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Benchmark directory (default: benchmarks/out/SUITE-BUDGET).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue interrupted runs from their last checkpoint (finished runs are "
                   "always skipped).")
@_slurm_options
def benchmark_cmd(args: tuple[str, ...], list_suites: bool, budget: str, seeds: int | None,
                  jobs: int, sets: tuple[str, ...], out: str | None, resume: bool,
                  executor: str | None, executor_config: str | None, **slurm: Any) -> None:
    """Run a benchmark suite (`harness benchmark paper-synthetic`), list the suites
    (`--list`), rewrite the report of a benchmark directory (`report DIR`), or show where
    its runs stand (`status DIR`, e.g. after `--executor slurm --no-wait`)."""
    from harness.benchmark import executors, suite_runner

    if list_suites:
        _list_suites()
        return
    if args[:1] in (("report",), ("status",)):
        _benchmark_dir_cmd(args)
        return
    if len(args) != 1:
        raise HarnessError("usage: harness benchmark SUITE [options] (see --list), "
                           "harness benchmark report DIR, or harness benchmark status DIR")
    suite = suite_runner.load_suite(args[0])
    run_on = executors.choose_executor(
        {"executor": suite.executor, "slurm": suite.slurm}, executor, executor_config, slurm,
        jobs, f"suite '{suite.source}'")
    target = Path(out) if out else Path("benchmarks") / "out" / f"{suite.name}-{budget}"
    again = ["harness", "benchmark", args[0], "--budget", budget,
             *(["--seeds", str(seeds)] if seeds else []), "--jobs", str(jobs),
             *[part for item in sets for part in ("--set", item)], "--out", str(target)]
    set_next_command(shlex.join(again) if run_on.name == "local" else
                     "the same harness benchmark command (the cluster's jobs go on)",
                     "finished runs are kept, stopped ones resume from their checkpoint")
    try:
        state = suite_runner.run_suite(suite, target, budget=budget, seeds=seeds, jobs=jobs,
                                    sets=list(sets), resume=resume, executor=run_on)
    except executors.Submitted as sub:
        click.echo(f"{sub}; see where they stand with: harness benchmark status {target}\n"
                   "the same command again collects the finished runs (and writes the report "
                   "once all are done)")
        return
    suite_runner.finish(state, target, host=get_host())


def _list_suites() -> None:
    """``harness benchmark --list``: each suite, what it runs, and per budget its number of
    runs and what the suite says that budget costs."""
    from harness.benchmark import suite_runner

    for row in suite_runner.list_suites():
        click.echo(f"{row['name']:<18} {row['description']}")
        about = suite_runner.suite_overview(row["name"])
        if "error" in about:
            click.echo(f"  cannot be read: {about['error']}")
            continue
        what = (f"{', '.join(about['models'])} on {', '.join(about['datasets'])}; "
                f"{about['seeds']} seed{'s' if about['seeds'] > 1 else ''}; from {row['source']}")
        click.echo(textwrap.fill(what, 100, initial_indent="  ", subsequent_indent="    ",
                                 break_on_hyphens=False, break_long_words=False))
        for b in about["budgets"]:
            runs = f"{b['runs']} runs" + (f" ({b['sweep']} sweep)" if b["sweep"] else "")
            head = f"  --budget {b['budget']:<6} {runs:<20} "
            click.echo(textwrap.fill(b["note"], 100, initial_indent=head,
                                     subsequent_indent=" " * len(head)) if b["note"]
                       else head.rstrip())


def _benchmark_dir_cmd(args: tuple[str, ...]) -> None:
    """``harness benchmark report DIR`` / ``status DIR``."""
    if len(args) != 2:
        raise HarnessError(f"usage: harness benchmark {args[0]} DIR")
    if args[0] == "status":
        from harness.benchmark import executors

        click.echo(executors.format_status(executors.status_rows(args[1])))
        return
    from harness.benchmark.report import write_report

    paths = write_report(args[1], get_host())
    click.echo(f"report written: {paths['md']} (and .csv, .json, .html)")


def _run_preset(run_dir: Path) -> str | None:
    from harness.configuration import run_config
    from harness.rundir.layout import RunLayout

    try:
        return run_config.load_toml(RunLayout(run_dir).config).get("run", {}).get("preset")
    except HarnessError:
        return None


def _print_summary(run_dir: Path) -> None:
    """The run's results in words (harness.evaluation.display): what each number is, its unit, which
    way is better, the paper's value when a suite publishes one, and why a protocol has none."""
    from harness.benchmark.suite import published_values
    from harness.evaluation import display
    from harness.rundir.layout import RunLayout

    path = RunLayout(run_dir).metrics
    if not path.is_file() or int(os.environ.get("RANK", "0")) != 0:
        return  # under `accelerate launch`, only the main process reports
    doc = json.loads(path.read_text())
    run = doc.get("run") or {}
    click.echo(f"run directory: {run_dir}")
    preset = _run_preset(run_dir)
    if preset:
        click.echo(f"  preset: {preset} (the plugin's configuration for the dataset; "
                   "--set overrides it)" if preset != "none" else "  preset: none")
    click.echo(f"results of {run.get('model', '?')} on {run.get('dataset', '?')} "
               f"(seed {run.get('seed', '?')}):")
    paper = published_values(str(run.get("model")), str(run.get("dataset")),
                                     get_host())
    for line in display.summary_lines(doc, get_host(), paper=paper):
        click.echo(line)
    features = sorted({str((r.get("stamp") or {}).get("feature_extractor"))
                       for r in doc.get("results", [])
                       if (r.get("stamp") or {}).get("feature_extractor")})
    if features:  # a domain-feature FID is not an ImageNet one
        click.echo(f"  FID features: {', '.join(features)}")
    for line in display.cost_lines(doc, get_host()):
        click.echo(line)
    peaks = {k: v for k, v in (doc.get("training") or {}).items() if k.startswith("peak_")}
    if peaks:
        click.echo("  " + ", ".join(f"{k}: {v:g}" for k, v in peaks.items()))


# ----------------------------------------------------------------------------------- main
def _add_plugin_commands() -> None:
    """Plugins' commands (a plugin whose hook fails is named and skipped: see
    :meth:`harness.host.plugins.Host.add_commands`)."""
    get_host().add_commands(cli)


def _fail(message: str, code: int) -> None:
    if env_flag("HARNESS_DEBUG"):
        traceback.print_exc()
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno == errno.ENOSPC:
        return (f"the disk is full{where}: nothing half-written was kept; free some space and "
                "continue with --resume (or re-run the same command if no checkpoint was written)")
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded{where}; free some space and continue with --resume"
    return f"{exc.strerror or exc}{where}"


def _interrupted() -> None:
    """Ctrl-C, SIGTERM or SIGHUP: say what is saved and the one command that continues."""
    command, saved = next_command()
    said = f"{saved}; " if saved else ""
    if command:
        click.echo(f"Interrupted: {said}continue with:\n  {command}", err=True)
    else:
        click.echo("Interrupted: nothing was changed; run the command again.", err=True)
    sys.exit(130)


def main(argv: list[str] | None = None) -> Any:
    """Run the command line. Every failure ends as one ``Error:`` line: status 2 for bad
    input, 1 for a run that failed (or an unexpected error), 130 for Ctrl-C.
    ``HARNESS_DEBUG=1`` prints the traceback too."""
    try:
        interrupt_on_termination()
        _add_plugin_commands()
        return cli.main(args=argv, prog_name="harness", standalone_mode=False)
    except HarnessError as exc:
        _fail(str(exc), getattr(exc, "exit_code", 2))
    except click.exceptions.Abort as exc:
        # Click turns Ctrl-C into Abort; say what continues instead of a bare "Aborted."
        if isinstance(exc.__context__, KeyboardInterrupt):
            _interrupted()
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if env_flag("HARNESS_DEBUG"):
            traceback.print_exc()
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except OSError as exc:
        _fail(_os_error(exc), 1)
    except MemoryError:
        _fail("out of memory: lower train.batch_size / eval.batch_size or the model's size", 1)
    except Exception as exc:  # the last net: no traceback for the user, but say it is a bug
        from harness.rundir.atomic import reports_full_disk

        if reports_full_disk(exc):  # a library's own exception for ENOSPC (safetensors)
            _fail(_os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))), 1)
        _fail(f"internal error: {one_line(exc, 500)} (this is a bug in harness or a "
              "plugin; HARNESS_DEBUG=1 shows the traceback)", 1)


if __name__ == "__main__":  # pragma: no cover
    main()
