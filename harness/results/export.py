"""``harness export RUN_OR_BENCHMARK... --out DIR``: results as a Hugging Face dataset.

The folder, written as a whole (atomically: an interrupted export leaves nothing)::

    DIR/README.md                    the dataset card: sources, lab, the task versions
    DIR/data/results.parquet         one row per (task, model, configuration)
    DIR/results.json                 the result documents themselves (the result schema)

``datasets.load_dataset("parquet", data_files="DIR/data/results.parquet")`` reads the table
back, and the card's ``configs`` let ``load_dataset("DIR")`` (or the hub repository) find it.
``results.json`` is what ``harness diff`` and ``harness leaderboard`` read: nothing is lost
in the flattening. ``--push-to-hub REPO`` then uploads the folder with ``huggingface_hub``
(imported only then): one ``create_repo`` and one ``upload_folder`` call.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.results import documents
from harness.results.tasks import versions_of
from harness.rundir import schema

if TYPE_CHECKING:  # the type only: importing the plugin loader here would cost start-up time
    from harness.host.plugins import Host

DATA_FILE = "data/results.parquet"
CARD_FILE = "README.md"
EXPORT_FORMAT = "vrrae-harness/results-export"


def machine_words(doc: dict[str, Any]) -> str:
    """The machine in words: CPU and cores (a benchmark records them), else the platform;
    the device(s) its runs used."""
    machine = doc.get("machine") or {}
    words = " ".join(str(machine[k]) for k in ("cpu",) if machine.get(k))
    if machine.get("cores"):
        words += f" ({machine['cores']} cores)"
    if not words:
        words = str(machine.get("platform") or machine.get("machine") or "")
    devices = sorted({str(env["environment"].get("cuda") or env["environment"].get("device"))
                      for e in doc["entries"] for env in e["environments"]
                      if env["environment"].get("cuda") or env["environment"].get("device")})
    return ", ".join(x for x in [words.strip(), *devices] if x) or "not recorded"


def _one(values: list[Any]) -> Any:
    return values[0] if len(set(map(str, values))) == 1 else None


def rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parquet table: one flat row per entry, the nested parts as JSON text."""
    out = []
    for doc in docs:
        suite = doc.get("suite") or {}
        machine = machine_words(doc)
        for e in doc["entries"]:
            task = doc["tasks"][e["task"]]
            envs = [env["environment"] for env in e["environments"]]
            ci = e["ci95"] or [None, None]
            out.append({
                "lab": doc.get("lab"), "machine": machine, "source": doc["source"],
                "kind": doc["kind"], "suite": suite.get("name"), "budget": suite.get("budget"),
                "task": task["id"], "task_name": task["name"], "task_version": task["version"],
                "task_hash": task["hash"], "task_pins": json.dumps(task["pins"], sort_keys=True),
                "dataset": e["dataset"], "protocol": task["protocol"], "metric": task["metric"],
                "key": task["key"], "model": e["model"], "config_hash": e["config_hash"],
                "configuration": json.dumps(e["configuration"], sort_keys=True, default=str),
                "n": e["n"], "mean": e["mean"], "std": e["std"], "ci95_low": ci[0],
                "ci95_high": ci[1], "seeds": e["seeds"], "values": e["values"],
                "higher_is_better": e["higher_is_better"], "wall_time_s": e["wall_time_s"],
                "torch": _one([env.get("torch") for env in envs]) if envs else None,
                "device": _one([env.get("device") for env in envs]) if envs else None,
                "torch_threads": _one([env.get("torch_threads") for env in envs]) if envs else None,
                "environments": json.dumps(e["environments"], sort_keys=True, default=str),
            })
    return out


def _arrow_schema() -> Any:
    import pyarrow as pa

    text = ("lab machine source kind suite budget task task_name task_version task_hash "
            "task_pins dataset protocol metric key model config_hash configuration torch "
            "device environments").split()
    fields = [pa.field(name, pa.string()) for name in text]
    fields += [pa.field("n", pa.int64()), pa.field("mean", pa.float64()),
               pa.field("std", pa.float64()), pa.field("ci95_low", pa.float64()),
               pa.field("ci95_high", pa.float64()), pa.field("seeds", pa.list_(pa.int64())),
               pa.field("values", pa.list_(pa.float64())),
               pa.field("higher_is_better", pa.bool_()), pa.field("wall_time_s", pa.float64()),
               pa.field("torch_threads", pa.int64())]
    return pa.schema(fields)


def card(docs: list[dict[str, Any]], lab: str) -> str:
    """The dataset card: YAML front matter for the hub, then what the results are."""
    from harness import __version__

    tasks = [t for d in docs for t in d["tasks"].values()]
    versions = versions_of(tasks)
    hashes: dict[str, list[str]] = {}
    for t in tasks:
        hashes.setdefault(t["name"], [])
        if t["hash"] not in hashes[t["name"]]:
            hashes[t["name"]].append(t["hash"])
    sources = "\n".join(
        f"- `{d['source']}`: {d['kind']}"
        + (f", suite {d['suite']['name']} ({d['suite']['budget']} budget)" if d.get("suite")
           else "")
        + f", {len(d['entries'])} results" for d in docs)
    upgraded = sorted({u for d in docs for u in d["upgraded"]})
    lines = [
        "---", "configs:", "- config_name: default", "  data_files:", "  - split: train",
        f"    path: {DATA_FILE}", "tags:", "- vrrae-harness", "- evaluation-results", "---", "",
        f"# Evaluation results from {lab}", "",
        f"Exported by vrrae-harness {__version__} (`harness export`). One row per task, model "
        "and training configuration: mean over seeds, sample std, 95 % Student-t interval, "
        "the per-seed values where the source kept them. Two numbers are comparable exactly "
        "when their `task` ids are equal (same task version and content hashes of what it "
        "pins); `harness diff` says why two are not. The full documents, in the result "
        "schema, are in `results.json`.", "",
        "```python", "import datasets",
        f'datasets.load_dataset("parquet", data_files="{DATA_FILE}")', "```", "",
        "## Sources", "", sources, "", "## Task versions", "",
        "| task | version | hash(es) |", "|---|---|---|",
        *[f"| {name} | {versions[name]} | {', '.join(hashes[name])} |" for name in versions],
    ]
    if upgraded:
        lines += ["", "## Read from older folders", "", *[f"- {u}" for u in upgraded]]
    return "\n".join(lines) + "\n"


def check_out(out: Path) -> None:
    """--out must be new or empty: an export never mixes with other files."""
    from harness.rundir.contents import check_out_path

    check_out_path(out)  # a file, or a file or an unwritable folder on the way
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"--out '{out}' already exists and is not an empty folder; choose "
                           "a new folder (nothing was written)")


def export(paths: list[str], out: str | Path, *, lab: str | None = None,
           host: Host | None = None) -> list[dict[str, Any]]:
    """Read every input (validated), then write the folder; returns the documents."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.rundir.atomic import atomic_dir

    out = Path(out)
    check_out(out)
    docs = documents.load_all(paths, host)
    lab = lab or platform.node() or "unknown lab"
    for doc in docs:
        doc["lab"] = lab
        schema.validate(doc, where=doc["source"], writing=True)
    table = pa.Table.from_pylist(rows(docs), schema=_arrow_schema())
    bundle = {"schema": EXPORT_FORMAT, "schema_version": schema.SCHEMA_VERSION, "lab": lab,
              "results": docs}
    with atomic_dir(out) as tmp:
        (tmp / "data").mkdir()
        pq.write_table(table, tmp / DATA_FILE)
        (tmp / documents.RESULTS_FILE).write_text(json.dumps(bundle, indent=1, default=str) + "\n",
                                               encoding="utf-8")
        (tmp / CARD_FILE).write_text(card(docs, lab), encoding="utf-8")
    return docs


def hub_api() -> Any:
    """``huggingface_hub.HfApi``, or the error that says how to get it (checked before the
    export is written)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise HarnessError("--push-to-hub needs huggingface_hub: `pip install huggingface_hub`"
                           " (nothing was written)") from None
    return HfApi


def push_to_hub(folder: str | Path, repo: str, *, private: bool = False) -> str:
    """Upload an exported folder as a dataset repository on the Hugging Face hub: the thin
    documented call (``HfApi.create_repo`` + ``HfApi.upload_folder``); the token is
    huggingface_hub's own (``huggingface-cli login`` or ``HF_TOKEN``). Returns the URL."""
    api = hub_api()()
    try:
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                                   commit_message="harness export")
    except Exception as exc:  # offline, no token, no right: say so, keep the folder
        error = HarnessError(f"could not upload '{folder}' to the hub dataset '{repo}': "
                             f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (the "
                             "export is written; upload it later with the same --push-to-hub)")
        error.exit_code = 1
        raise error from exc
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/datasets/{repo}")
