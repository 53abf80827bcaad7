"""One prepared GPU run: install, CUDA tests, the rest of the suite, step-time figures and the
paper-budget suites on Fashion-MNIST, every result packed into at most 8 files.

    python benchmarks/gpu/run.py OUT_DIR          # on the GPU machine (about 9 minutes)
    python benchmarks/gpu/run.py OUT_DIR --dry    # the same script on a CPU, tiny settings

A GPU machine gives a piece of work 15 minutes in all (its start included), at most 10 minutes
a command and at most 8 files back, so this script has to work the first time: each phase
runs as a subprocess with its own deadline (killed, with its process group, when it passes it;
what it finished is kept), the whole script ends within ``--minutes`` (9), and packing always
runs. Phases, in order:

1. ``environment``: GPU, driver, torch, cores;
2. ``install``: the carried wheels (``benchmarks/gpu/wheels``, made by ``fetch.sh``) whose
   distributions are missing, then the project (``pip install --no-deps
   --no-build-isolation .``); ``--dry`` asks pip for a dry run instead;
3. ``bench-*``: ``benchmarks/bench_gpu.py`` once per configuration (MNIST, bumps, CelebA),
   alone on the machine (its figures are timings), each with its share of the time;
4. side by side until the deadline: ``harness benchmark paper-real`` and ``paper-ablation``
   at ``--budget paper --seeds 3 --set datasets=fashion-mnist``, both at once, each with
   ``--jobs J`` (J from the cores left to them and the GPU memory: each run gets
   ``OMP_NUM_THREADS = cores // J`` from the benchmark); ``tests/test_cuda.py`` (slow tests
   included); the rest of the test suite (pytest-xdist when installed, ``OMP_NUM_THREADS=1``
   per worker). The paper budget needs most of the time, so the tests share it rather than
   take their own. At the deadline every process group is stopped with SIGTERM (a run saves
   a checkpoint) and ``harness benchmark report`` writes the report of what finished;
5. ``pack``: into ``OUT_DIR``: ``summary.json`` (the device, every phase's status, seconds and
   exit code, the test counts, the suites' finished/planned runs), ``progress.log``,
   ``logs.tar.gz`` (each phase's full output, JUnit XML), ``bench_gpu_cuda.json`` / ``.md``
   (``bench_gpu_cpu.*`` in a dry run), one ``<suite>.tar.gz`` per suite (its benchmark
   directory without weights and checkpoints).

Only the documented ``harness benchmark`` command line is used (``--budget``, ``--seeds``,
``--set``, ``--jobs``, ``--out``), so the script follows changes inside the benchmark.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SUITES = ("paper-real", "paper-ablation")
#: bench_gpu.py configurations on the GPU: name -> (share of the bench time, extra options)
BENCH_GPU = {
    "mnist-vrrae-conv": (0.4, ["--warmup", "50", "--steps", "500"]),
    "bumps-vrrae-conv": (0.25, ["--warmup", "50", "--steps", "500"]),
    "celeba-vrrae-conv": (0.35, ["--warmup", "10", "--steps", "40"]),
}
BENCH_DRY = {"fmnist-mlp-ae": (1.0, ["--warmup", "10", "--steps", "10", "--repeats", "1",
                                     "--no-compiled"])}
#: what a suite's packed folder leaves out (weights and training state: large, not results)
PACK_SKIP = re.compile(r"(\.safetensors|\.pt|\.npy|\.lock)$|(^|/)checkpoints(/|$)")
MAX_FILE = 15 * 2**20  # what comes back: 16 MiB a file


@dataclass
class Plan:
    """Every size and time of one invocation (full on a GPU, tiny with ``--dry``)."""

    dry: bool
    seconds: float
    budget: str = "paper"
    seeds: int = 3
    suite_sets: list[str] = field(default_factory=list)
    rest_tests: list[str] = field(default_factory=lambda: ["tests", "--ignore=tests/test_cuda.py"])
    bench: dict = field(default_factory=lambda: dict(BENCH_GPU))
    budgets: dict = field(default_factory=lambda: {"install": 60, "bench": 150})
    reserve: float = 75.0  # for the reports of stopped suites and packing, at the end
    suite_models: dict = field(default_factory=dict)  # --set models=... per suite


def make_plan(args: argparse.Namespace) -> Plan:
    if not args.dry:
        return Plan(dry=False, seconds=args.minutes * 60)
    # tiny: 4 steps on a few images, no FID (training its extractor takes minutes on a
    # CPU), one seed, one model without a beta sweep per suite
    return Plan(dry=True, seconds=args.minutes * 60, budget="smoke", seeds=1,
                suite_sets=["data.n_train=512", "data.n_test=128", "train.batch_size=64",
                            "train.steps=4", "eval.random-generation.n_samples=32",
                            "eval.interpolation.n_pairs=4", 'eval.metrics=["collapse"]'],
                rest_tests=args.dry_tests.split(), bench=dict(BENCH_DRY),
                budgets={"install": 60, "bench": 150}, reserve=60.0,
                suite_models={"paper-real": "ae", "paper-ablation": "vrrae-nokl"})


class Clock:
    """The script's deadline, and progress lines to stdout and ``progress.log``."""

    def __init__(self, seconds: float, log: Path) -> None:
        self.start = time.monotonic()
        self.end = self.start + seconds
        self.log = log

    def left(self) -> float:
        return self.end - time.monotonic()

    def say(self, message: str) -> None:
        line = f"[gpu-run {time.monotonic() - self.start:6.1f} s] {message}"
        print(line, flush=True)
        with open(self.log, "a") as handle:
            handle.write(line + "\n")


def run_phase(clock: Clock, name: str, args: list[str], log: Path, seconds: float, *,
              env: dict[str, str] | None = None, reserve: float = 0.0) -> dict:
    """Run ``args`` (output to ``log``) until it ends or ``seconds`` pass (capped by the
    script's deadline less ``reserve``); then stop its whole process group. Not started when
    the script has under 5 s left."""
    if clock.left() - reserve < 5:
        clock.say(f"{name}: skipped, no time left")
        return {"rc": None, "timed_out": True, "skipped": "no time left", "seconds": 0}
    return wait_all(clock, {name: start(args, log, env)}, seconds, reserve=reserve)[name]


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> dict:
    handle = open(log, "ab")
    handle.write(("$ " + " ".join(args) + "\n").encode())
    handle.flush()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return {"proc": proc, "handle": handle, "log": log, "args": args, "t0": time.monotonic()}


def wait_all(clock: Clock, jobs: dict[str, dict], seconds: float, *,
             reserve: float = 0.0) -> dict[str, dict]:
    """Wait for every job until its deadline, printing a line every 30 s; stop the ones past
    it (SIGTERM to the group, SIGKILL 20 s later)."""
    deadline = min(time.monotonic() + seconds, clock.end - reserve)
    names = ", ".join(jobs)
    clock.say(f"{names}: started, deadline in {deadline - time.monotonic():.0f} s")
    beat = time.monotonic()
    while any(j["proc"].poll() is None for j in jobs.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
        if time.monotonic() - beat >= 30:
            beat = time.monotonic()
            for name, job in jobs.items():
                if job["proc"].poll() is None:
                    clock.say(f"{name}: running {time.monotonic() - job['t0']:.0f} s; "
                              f"last line: {last_line(job['log'])}")
    results = {}
    for name, job in jobs.items():
        timed_out = job["proc"].poll() is None
        if timed_out:
            stop(job["proc"])
        job["handle"].close()
        rc = job["proc"].returncode
        results[name] = {"rc": rc, "timed_out": timed_out, "log": job["log"].name,
                         "seconds": round(time.monotonic() - job["t0"], 1),
                         "command": " ".join(job["args"])}
        status = "stopped at its deadline" if timed_out else f"exit {rc}"
        clock.say(f"{name}: {status} after {results[name]['seconds']} s")
    return results


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (a harness run saves a checkpoint), then SIGKILL to what
    is left of it 20 s later; the group may outlive its leader (a benchmark's runs)."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while time.monotonic() < end and (proc.poll() is None or group_alive(proc.pid)):
            time.sleep(0.2)
        if proc.poll() is not None and not group_alive(proc.pid):
            break
    proc.wait()


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count), from /proc."""
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def last_line(log: Path) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            lines = handle.read().decode(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return "-"
    lines = [x.strip() for x in lines if x.strip()]
    return lines[-1][:160] if lines else "-"


# ----------------------------------------------------------------------------- phases
def environment() -> dict:
    """What machine this is: the GPU (name, memory), driver, torch, cores."""
    info: dict = {"python": sys.version.split()[0], "cores": os.cpu_count() or 1,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,memory.total,driver_version"
        done = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
        info["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    probe = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({"
             "'torch': torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': c, "
             "'device': torch.cuda.get_device_name(0) if c else 'cpu', 'gpu_memory_gib': "
             "torch.cuda.get_device_properties(0).total_memory / 2**30 if c else 0}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    info.update(json.loads(done.stdout) if done.returncode == 0 else
                {"torch_error": done.stderr.strip()[-300:], "device": "unknown"})
    return info


def missing_wheels(wheels: Path) -> list[Path]:
    """The carried wheels whose distribution is not installed (one installed in any version
    is kept: the image's own packages are not replaced)."""
    missing = []
    for wheel in sorted(wheels.glob("*.whl")):
        dist = wheel.name.split("-")[0]
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(wheel)
    return missing


def install(clock: Clock, plan: Plan, work: Path, wheels: Path) -> dict:
    """The missing carried wheels, then the project, without dependencies (nothing can be
    fetched there); a dry run asks pip what it would do."""
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
           "--disable-pip-version-check"] + (["--dry-run"] if plan.dry else [])
    missing = missing_wheels(wheels)
    clock.say(f"install: carried wheels missing here: {[w.name for w in missing] or 'none'}")
    seconds = plan.budgets["install"]
    result = {"wheels": [w.name for w in missing]}
    if missing:
        result["wheels_install"] = run_phase(clock, "install-wheels",
                                             pip + [str(w) for w in missing],
                                             work / "install.log", seconds / 2)
    result["project_install"] = run_phase(clock, "install-project",
                                          pip + ["--no-build-isolation", "."],
                                          work / "install.log", seconds / 2)
    probe = "import harness, harness_plugins, pytorch_optimizer, tomli_w, safetensors, click"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    result["imports_ok"] = done.returncode == 0
    if done.returncode:
        result["imports_error"] = done.stderr.strip().splitlines()[-1:]
    clock.say(f"install: imports {'ok' if result['imports_ok'] else result['imports_error']}")
    return result


def pytest_args(work: Path, name: str, selection: list[str], *, workers: int = 0) -> list[str]:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
            f"--junitxml={work / (name + '.xml')}", *selection]
    if workers > 1:
        args += ["-n", str(workers)]
    return args


def test_counts(xml: Path) -> dict:
    """Passed/failed/error/skipped counts from a JUnit XML file (absent: not finished)."""
    if not xml.is_file():
        return {"finished": False}
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError:
        return {"finished": False}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {"finished": True, **counts, "failed": failed[:50]}


def bench(clock: Clock, plan: Plan, work: Path, env: dict[str, str]) -> dict:
    """bench_gpu.py once per configuration, each writing into its own folder."""
    device = "cpu" if plan.dry else "cuda"
    results = {}
    end = time.monotonic() + plan.budgets["bench"]
    shares = {name: share for name, (share, _) in plan.bench.items()}
    for name, (share, extra) in plan.bench.items():
        # a configuration that finished early leaves its time to the ones after it
        seconds = (end - time.monotonic()) * share / sum(shares.values())
        shares.pop(name)
        folder = work / "bench" / name
        args = [sys.executable, "benchmarks/bench_gpu.py", "--device", device, "--configs", name,
                "--write", "--results", str(folder), *extra]
        results[name] = run_phase(clock, f"bench-{name}", args, work / f"bench-{name}.log",
                                  seconds, env=env, reserve=plan.reserve)
    return results


def merge_bench(work: Path, out: Path, device: str) -> dict:
    """One bench_gpu document (and its markdown table) from the per-configuration ones."""
    docs = [json.loads(p.read_text()) for p in sorted((work / "bench").glob("*/*.json"))]
    if not docs:
        return {"configs": []}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu  # its markdown table; imports torch, already installed here

    doc = {**docs[0], "command": "; ".join(d["command"] for d in docs),
           "results": [r for d in docs for r in d["results"]]}
    stem = f"bench_gpu_{device}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"{stem}.md").write_text(bench_gpu.markdown(doc))
    return {"configs": [r["config"] for r in doc["results"]], "device": doc["device"],
            "rows": doc["results"]}


def jobs_for(info: dict, test_cores: int) -> int:
    """Runs at once per suite (two suites share the card): the cores left after the tests'
    share, halved, and at most one run per 8 GiB of GPU memory, at most 8."""
    cores = max(1, (info.get("cores") or 1) - test_cores)
    by_memory = int(info.get("gpu_memory_gib") or 0) // 8 or 1
    return max(1, min(8, cores // 2, by_memory))


def suites_and_tests(clock: Clock, plan: Plan, work: Path, env: dict[str, str],
                     info: dict) -> dict:
    """Both paper suites at once, and the CUDA tests and the rest of the test suite beside
    them, until the deadline; then the reports of what finished."""
    has_xdist = importlib.util.find_spec("xdist") is not None
    workers = 0 if plan.dry or not has_xdist else max(2, min(4, (info.get("cores") or 1) // 4))
    jobs = 1 if plan.dry else jobs_for(info, (workers or 1) + 1)
    clock.say(f"suites: --jobs {jobs} each; rest of the tests: "
              f"{f'{workers} xdist workers' if workers else 'one process'}")
    harness = [sys.executable, "-m", "harness.cli", "benchmark"]
    if clock.left() - plan.reserve < 5:
        clock.say("suites and tests: skipped, no time left")
        return {"skipped": "no time left"}
    def folder(suite: str) -> Path:
        return work / f"{suite}-fashion-mnist-{plan.budget}"

    running = {}
    for suite in SUITES:
        args = [*harness, suite, "--budget", plan.budget, "--seeds", str(plan.seeds),
                "--set", "datasets=fashion-mnist", "--jobs", str(jobs),
                "--out", str(folder(suite))]
        if suite in plan.suite_models:
            args += ["--set", f"models={plan.suite_models[suite]}"]
        for item in plan.suite_sets:
            args += ["--set", item]
        running[suite] = start(args, work / f"{suite}.log", env)
    # the tests choose their own data (a data root would turn "not found" cases into finds)
    test_env = {k: v for k, v in env.items() if k not in ("HARNESS_DATA_ROOT",
                                                          "HARNESS_CACHE_DIR")}
    test_env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    running["cuda-tests"] = start(
        pytest_args(work, "cuda-tests", ["tests/test_cuda.py", "-m", "slow or not slow"]),
        work / "cuda-tests.log", test_env)
    running["tests"] = start(pytest_args(work, "tests", plan.rest_tests, workers=workers),
                             work / "tests.log", test_env)
    results = wait_all(clock, running, clock.left(), reserve=plan.reserve)
    # a suite stopped at the deadline has no report yet: write the one of what finished
    reports = {f"report-{suite}": start([*harness, "report", str(folder(suite))],
                                        work / f"report-{suite}.log", env)
               for suite in SUITES if results[suite]["timed_out"]
               and (folder(suite) / "benchmark.json").is_file()}
    if reports:
        results.update(wait_all(clock, reports, 90, reserve=10))
    for suite in SUITES:
        results[suite]["runs"] = suite_progress(folder(suite))
    for name in ("cuda-tests", "tests"):
        results[name]["counts"] = test_counts(work / f"{name}.xml")
    return results


def suite_progress(folder: Path) -> dict:
    """Planned runs (``benchmark.json``'s ``plan``) and runs with results."""
    try:
        planned = len(json.loads((folder / "benchmark.json").read_text()).get("plan", []))
    except (OSError, ValueError):
        planned = None
    return {"planned": planned, "finished": len(list(folder.glob("runs/*/metrics.json")))}


# ----------------------------------------------------------------------------- packing
def pack_folder(folder: Path, target: Path) -> dict:
    """``folder`` as a gzip'd tar without weights and checkpoints; when that is over the
    16 MiB a returned file may have, the run logs and images go first."""
    if not folder.is_dir():
        return {"packed": False}
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not PACK_SKIP.search(p.relative_to(folder).as_posix()))
    for drop in (None, re.compile(r"(^|/)runs/.*(\.log|log\.jsonl|\.png)$"),
                 re.compile(r"(^|/)runs/.*\.(?!json$)[^/]*$")):
        chosen = [p for p in files if drop is None
                  or not drop.search(p.relative_to(folder).as_posix())]
        with tarfile.open(target, "w:gz") as tar:
            for path in chosen:
                tar.add(path, arcname=f"{folder.name}/{path.relative_to(folder)}")
        if target.stat().st_size <= MAX_FILE:
            break
    return {"packed": True, "files": len(chosen), "bytes": target.stat().st_size}


def pack(out: Path, work: Path, summary: dict, plan: Plan) -> None:
    """At most 8 files in ``out``: summary.json, progress.log, logs.tar.gz, bench_gpu_*.json
    / .md, one tar.gz per suite."""
    device = "cpu" if plan.dry else "cuda"
    try:
        summary["bench"] = merge_bench(work, out, device)
    except Exception as exc:  # a broken bench result must not lose the rest
        summary["bench"] = {"error": f"{type(exc).__name__}: {exc}"}
    for suite in SUITES:
        folder = work / f"{suite}-fashion-mnist-{plan.budget}"
        summary.setdefault("packed", {})[suite] = pack_folder(folder, out / f"{suite}.tar.gz")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for path in sorted(work.glob("*.log")) + sorted(work.glob("*.xml")):
            tar.add(path, arcname=f"logs/{path.name}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for the (at most 8) result files")
    parser.add_argument("--dry", action="store_true", help="on the CPU with tiny settings")
    parser.add_argument("--minutes", type=float, default=None,
                        help="the whole script's deadline (default: 9; --dry: 6)")
    parser.add_argument("--data-root", type=Path, default=HERE / "data",
                        help="HARNESS_DATA_ROOT for the benchmarks (default: the carried data)")
    parser.add_argument("--wheels", type=Path, default=HERE / "wheels")
    parser.add_argument("--dry-tests", default="tests/test_toxfile.py",
                        help="with --dry: the pytest selection standing for the rest of the "
                             "suite")
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (6.0 if args.dry else 9.0)
    plan = make_plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if len(list(args.out.iterdir())):
        parser.error(f"{args.out} is not empty: give an empty or new folder")
    work = Path(tempfile.mkdtemp(prefix="gpu-run-"))
    clock = Clock(plan.seconds, args.out / "progress.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HARNESS_CACHE_DIR": str(work / "cache"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.data_root.is_dir():
        env["HARNESS_DATA_ROOT"] = str(args.data_root.resolve())
    if plan.dry:
        env["CUDA_VISIBLE_DEVICES"] = ""
    summary: dict = {"dry": plan.dry, "plan": {"budget": plan.budget, "seeds": plan.seeds,
                                               "minutes": args.minutes,
                                               "suite_sets": plan.suite_sets}}
    try:
        summary["environment"] = info = environment()
        clock.say(f"environment: {info.get('device')}, {info.get('cores')} cores, torch "
                  f"{info.get('torch')}; work folder {work}")
        summary["install"] = install(clock, plan, work, args.wheels)
        summary["bench_runs"] = bench(clock, plan, work, env)
        summary["suites"] = suites_and_tests(clock, plan, work, env, info)
    except Exception as exc:  # keep and pack whatever finished
        summary["error"] = f"{type(exc).__name__}: {exc}"
        clock.say(f"error: {summary['error']}")
    finally:
        summary["seconds"] = round(time.monotonic() - clock.start, 1)
        pack(args.out, work, summary, plan)
        clock.say(f"packed {sorted(p.name for p in args.out.iterdir())} into {args.out}")
        shutil.rmtree(work, ignore_errors=True)
    return 1 if "error" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
