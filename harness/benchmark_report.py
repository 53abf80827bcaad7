"""The report of a ``harness benchmark`` directory: Markdown, CSV and JSON tables, the paper's
claims checked against our numbers, matplotlib figures, and one self-contained HTML page.

Written by :func:`write_report` into the benchmark directory: ``report.md``, ``report.csv``,
``report.json``, ``report.html`` (figures embedded as data URIs) and ``figures/*.png``.
Every table names the budget, so a reduced run is never mistaken for the paper's protocol.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from . import report as tables

BUDGET_NOTE = {"smoke": "SMOKE budget: a few steps, tiny sample counts; checks the pipeline, "
                        "says nothing about the models",
               "cpu": "CPU budget: reduced steps and sample counts; not the paper's protocol",
               "paper": "PAPER budget: the paper's configuration (the presets, 2000 steps on the bumps)"}

SMOKE_CLAIMS = ("At the smoke budget (a few training steps) these verdicts are computed the "
                "same way but are not evidence for or against the paper: the models are barely "
                "trained.")

# ------------------------------------------------------------------------------- numbers
def _stats(state: dict[str, Any], out: Path) -> tuple[list[dict[str, Any]], dict[Any, Any]]:
    done = [out / r["dir"] for r in state["runs"].values()
            if r.get("phase") == "final" and r.get("status") == "done"]
    rows = tables.collect(done) if done else []
    by: dict[tuple[str, str, str], Any] = {}
    for row in rows:
        key = (row["dataset"], row["model"], f"{row['protocol']}/{row['metric']}")
        # several stamps of one metric: keep the one with most seeds
        if key not in by or row["n"] > by[key]["n"]:
            by[key] = row
    return rows, by


def _fmt(row: dict[str, Any] | None, digits: int = 2) -> str:
    if row is None:
        return "not measured"
    return f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f} (n={row['n']})"


def claims(state: dict[str, Any], by: dict[Any, Any]) -> list[dict[str, str]]:
    """The suite's ``[[claims]]``, each judged on every dataset of this benchmark it covers:
    supported / not supported / not measured, with the numbers and the seeds."""
    datasets = state["suite"]["datasets"]
    out: list[dict[str, str]] = []
    for claim in state["suite"].get("claims", []):
        wanted = [d for d in (claim.get("datasets") or datasets)
                  if d not in claim.get("skip", [])]
        scope = [d for d in wanted if d in datasets]
        if not scope:
            out.append({"claim": claim["text"], "dataset": ", ".join(wanted),
                        "verdict": "not measured",
                        "evidence": "no run on that dataset in this benchmark"})
        out += [judge(claim, dataset, by) for dataset in scope]
    return out


def judge(claim: dict[str, Any], dataset: str, by: dict[Any, Any]) -> dict[str, str]:
    """One claim on one dataset. ``test = "lower"``: the model's mean over seeds is below the
    mean of each model in ``than``; ``"wider"``: its std over seeds is above each of theirs
    (needs two seeds or more)."""
    metric, test = claim["metric"], claim.get("test", "lower")
    names = [claim["model"], *claim["than"]]
    rows = [by.get((dataset, m, metric)) for m in names]
    found = [r for r in rows if r is not None]
    if len(found) < len(rows) or (test == "wider" and any(r["n"] < 2 for r in found)):
        verdict = "not measured"
    elif test == "lower":
        verdict = ("supported" if all(found[0]["mean"] < r["mean"] for r in found[1:])
                   else "not supported")
    else:
        verdict = ("supported" if all(found[0]["std"] > r["std"] for r in found[1:])
                   else "not supported")
    numbers = ", ".join(f"{m} {_fmt(r)}" for m, r in zip(names, rows, strict=True))
    evidence = ("std over seeds: " if test == "wider" else "") + numbers
    for extra in claim.get("evidence", []):
        evidence += f"; {extra}: " + ", ".join(f"{m} {_fmt(by.get((dataset, m, extra)))}"
                                              for m in names)
    used = sorted({s for r in rows if r for s in r["seeds"]})
    evidence += f" ({metric}; {'seeds ' + ','.join(map(str, used)) if used else 'no runs'})"
    if claim.get("note"):
        evidence += f". Note: {claim['note']}"
    return {"claim": claim["text"], "dataset": dataset, "verdict": verdict,
            "evidence": evidence}


def paper_rows(state: dict[str, Any], by: dict[Any, Any]) -> tuple[list[str], list[list[str]],
                                                                   str]:
    """The suite's ``[published]`` numbers beside ours: (header, rows, note)."""
    published = state["suite"].get("published") or {}
    columns, values = published.get("columns", []), published.get("values", {})
    header = ["dataset", "model"]
    for column in columns:
        header += [f"paper {column}", f"ours {column}"]
    body = []
    for dataset in state["suite"]["datasets"]:
        for model, numbers in values.get(dataset, {}).items():
            cells = [dataset, model]
            for column, number in zip(columns, numbers, strict=True):
                cells += [f"{number:g}", _fmt(by.get((dataset, model, column)))]
            body.append(cells)
    missing = [d for d in state["suite"]["datasets"] if d not in values]
    note = f"source: {published.get('source', 'the paper')}"
    if missing:
        note += (f"; the paper reports no numbers for {', '.join(missing)} (it reports "
                 f"{', '.join(values) or 'none'})")
    return header, body, note


# ------------------------------------------------------------------------------- figures
def _load_run(run_dir: Path) -> tuple[Any, Any, Any]:
    from . import config as cfgmod
    from . import runner, runs
    from .plugins import get_host

    host = get_host()
    config = cfgmod.from_dict(cfgmod.load_toml(run_dir / runs.CONFIG_FILE), host=host)
    splits = runner.load_data(host, config)
    model = runner.build_model(host, config, splits.info)
    runs.load_weights(run_dir, model)
    model.eval()
    return config, splits, model


def _raw(image: Any, info: Any) -> Any:
    from .evaluation import to_display

    return to_display(image[None], info)[0]


def _stack(split: Any, idx: list[int]) -> Any:
    import torch

    return torch.stack([split[i][0] for i in idx])


def figures(state: dict[str, Any], out: Path) -> list[tuple[str, Path]]:
    """Every figure of the report as (caption, PNG path); a figure that fails is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    folder = out / "figures"
    folder.mkdir(exist_ok=True)
    made: list[tuple[str, Path]] = []
    finals: dict[tuple[str, str], Path] = {}
    for rec in sorted(state["runs"].values(), key=lambda r: r.get("seed", 0)):
        if rec.get("phase") == "final" and rec.get("status") == "done":
            finals.setdefault((rec["dataset"], rec["model"]), out / rec["dir"])
    for dataset in state["suite"]["datasets"]:
        models = [(m, finals[(dataset, m)]) for m in state["suite"]["models"]
                  if (dataset, m) in finals]
        if not models:
            continue
        loaded = {}
        for model, run_dir in models:
            try:
                loaded[model] = _load_run(run_dir)
            except Exception as exc:  # a model that cannot be reloaded loses its figures only
                print(f"figure: cannot reload {run_dir}: {exc}")
        # latent scatter (figure 2): training codes, the diagonal test set in red
        two = {m: v for m, v in loaded.items() if v[2].bottleneck_dim == 2}
        if two:
            fig, axes = plt.subplots(1, len(two), figsize=(3.2 * len(two), 3.2), squeeze=False)
            for ax, (model, (_, splits, net)) in zip(axes[0], two.items(), strict=True):
                with torch.no_grad():
                    tr = net.encode(_stack(splits.train, list(range(len(splits.train)))))
                    ax.scatter(tr[:, 0], tr[:, 1], s=8, c="tab:blue", label="train")
                    if "diagonal" in splits.extra:
                        d = splits.extra["diagonal"]
                        dg = net.encode(_stack(d, list(range(len(d)))))
                        ax.scatter(dg[:, 0], dg[:, 1], s=10, c="red", label="diagonal test")
                ax.set_title(model)
            axes[0][0].legend(fontsize=7)
            made.append((f"{dataset}: latent means (k=2), training set and the diagonal test "
                         "set in red (paper figure 2)", _save(fig, folder / f"latent-{dataset}.png")))
        # interpolation strips with their two endpoint images (figure 4)
        if loaded:
            fig, axes = plt.subplots(len(loaded), 9, figsize=(9, 1.1 * len(loaded) + 0.3),
                                     squeeze=False)
            for row, (model, (_, splits, net)) in enumerate(loaded.items()):
                gen = torch.Generator().manual_seed(0)
                i, j = torch.randperm(len(splits.train), generator=gen)[:2].tolist()
                ends = _stack(splits.train, [i, j])
                with torch.no_grad():
                    codes = net.encode(ends)
                    t = torch.linspace(0, 1, 7)[:, None]
                    strip = net.decode(codes[0] * (1 - t) + codes[1] * t)
                images = [ends[0], *strip, ends[1]]
                for col, img in enumerate(images):
                    ax = axes[row][col]
                    _show(ax, _raw(img, splits.info))
                    if row == 0:
                        ax.set_title(["input A", "t=0", "", "", "", "", "", "t=1", "input B"][col],
                                     fontsize=7)
                axes[row][0].set_ylabel(model, fontsize=8)
            made.append((f"{dataset}: interpolation strips; the outer images are the two inputs, "
                         "t=0 and t=1 their decoded endpoints (paper figure 4)",
                         _save(fig, folder / f"interpolation-{dataset}.png")))
        # sample grids (figures 3, 5, 6): decoded samples of a Gaussian mixture fitted on the
        # training codes (as the random-generation protocol), on the raw scale
        if loaded:
            from sklearn.mixture import GaussianMixture

            fig, axes = plt.subplots(len(loaded), 8, figsize=(8, 1.1 * len(loaded) + 0.3),
                                     squeeze=False)
            for row, (model, (_, splits, net)) in enumerate(loaded.items()):
                n = min(len(splits.train), 2000)
                with torch.no_grad():
                    codes = net.encode(_stack(splits.train, list(range(n)))).double().numpy()
                    gmm = GaussianMixture(min(10, max(1, n // 10)), random_state=0).fit(codes)
                    drawn = net.decode(torch.from_numpy(gmm.sample(8)[0]).float())
                for col in range(8):
                    _show(axes[row][col], _raw(drawn[col], splits.info))
                axes[row][0].set_ylabel(model, fontsize=8)
            made.append((f"{dataset}: random samples (Gaussian mixture on the training codes, "
                         "first seed; paper figures 3, 5, 6)",
                         _save(fig, folder / f"samples-{dataset}.png")))
        # loss curves
        fig, ax = plt.subplots(figsize=(5, 3))
        for model, run_dir in models:
            steps, losses = _losses(run_dir / "log.jsonl")
            if steps:
                ax.plot(steps, losses, label=model)
        ax.set_xlabel("step")
        ax.set_ylabel("training rec error (%)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        made.append((f"{dataset}: training loss (rec) per model, first seed",
                     _save(fig, folder / f"loss-{dataset}.png")))
    # the selection metric vs beta
    for choice in state.get("beta_selection", []):
        values = {float(b): v for b, v in choice.get("values", {}).items() if v is not None}
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(4, 3))
        xs = sorted(values)
        ax.plot(xs, [values[x] for x in xs], "o-")
        if choice.get("chosen") is not None:
            ax.plot([choice["chosen"]], [values[choice["chosen"]]], "r*", markersize=14,
                    label="chosen")
            ax.legend(fontsize=7)
        ax.set_xscale("symlog", linthresh=min([x for x in xs if x > 0] or [1e-6]))
        ax.set_xlabel("beta")
        ax.set_ylabel(choice.get("metric", ""))
        ax.set_title(f"{choice['model']} on {choice['dataset']} (validation)", fontsize=9)
        made.append((f"{choice['dataset']}/{choice['model']}: {choice.get('metric')} vs beta",
                     _save(fig, folder / f"beta-{choice['dataset']}-{choice['model']}.png")))
    return made


def _show(ax: Any, img: Any) -> None:
    arr = img.detach().cpu().numpy()
    if arr.shape[0] == 1:
        ax.imshow(arr[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(arr.transpose(1, 2, 0))
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _losses(path: Path) -> tuple[list[int], list[float]]:
    steps, losses = [], []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            loss = rec.get("loss", {})
            value = loss.get("rec", loss.get("total")) if isinstance(loss, dict) else loss
            if isinstance(value, int | float) and math.isfinite(value) and "step" in rec:
                steps.append(int(rec["step"]))
                losses.append(float(value))
    return steps, losses


# ------------------------------------------------------------------------------- writing
def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


class Header(str):
    """A column header in words that keeps the raw ``protocol/metric`` key it stands for: the
    HTML shows the key as a tooltip and in a line under the table, Markdown under the table."""

    key: str

    def __new__(cls, text: str, key: str = "") -> Header:
        made = super().__new__(cls, text)
        made.key = key
        return made


def _keys_line(header: list[str]) -> str:
    keys = [f"{h} = {h.key}" for h in header if isinstance(h, Header) and h.key]
    return "raw keys (metrics.json, report.csv): " + "; ".join(keys) if keys else ""


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(
        f"<th title='{html.escape(h.key, quote=True)}'>{html.escape(h)}</th>"
        if isinstance(h, Header) and h.key else f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in body)
    keys = _keys_line(header)
    foot = f"<p class='keys'>{html.escape(keys)}</p>" if keys else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{foot}"


def _cell(row: dict[str, Any] | None) -> str:
    """mean ± std (n) over seeds; a per-run spread (a ``_std`` key) as its mean only, so no
    number carries two spreads."""
    if row is None:
        return ""
    if str(row["metric"]).endswith("_std"):
        return f"{row['mean']:.3f} (n={row['n']})"
    return _fmt(row, 3)


def results_tables(rows: list[dict[str, Any]], by: dict[Any, Any], betas: dict[Any, Any],
                   note: str) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """One results table per protocol (so each fits a page), headers in words with unit and
    direction (:func:`harness.report.header`), the raw key kept in :class:`Header`."""
    from .display import protocol_title
    from .plugins import get_host

    host = get_host()
    models = sorted({(r["dataset"], r["model"]) for r in rows})
    shown = {(r["protocol"], r["metric"]): r for r in rows}
    out = []
    for protocol in sorted({p for p, _ in shown}):
        metrics = sorted(m for p, m in shown if p == protocol)
        header = ["dataset", "model", "beta"] + [
            Header(tables.header(shown[(protocol, m)], with_protocol=False), f"{protocol}/{m}")
            for m in metrics]
        body = [[d, m, "" if betas.get((d, m)) is None else f"{betas[(d, m)]:g}"]
                + [_cell(by.get((d, m, f"{protocol}/{mm}"))) for mm in metrics]
                for d, m in models]
        out.append((f"Results: {protocol_title(protocol, host)}",
                    f"{note}; mean ± std (n runs) over seeds; ↑ higher is better, ↓ lower is "
                    "better", header, body))
    return out


def sections(state: dict[str, Any], out: Path) -> tuple[list[tuple[str, str, list[str],
                                                                     list[list[str]]]],
                                                        list[dict[str, str]], list[dict[str, Any]]]:
    """(title, note, header, body) tables, the claims and the raw rows."""
    rows, by = _stats(state, out)
    budget = state["budget"]
    note = f"budget: {budget} ({BUDGET_NOTE.get(budget, '')})"
    betas = {(r["dataset"], r["model"]): r.get("beta") for r in state["runs"].values()
             if r.get("phase") == "final"}
    out_tables = results_tables(rows, by, betas, note)
    if state["suite"].get("published"):
        pheader, prow, pnote = paper_rows(state, by)
        out_tables.append(("The paper's numbers beside ours", f"{note}; {pnote}", pheader,
                           prow))
    for choice in state.get("beta_selection", []):
        body = [[f"{float(b):g}", "" if v is None else f"{v:.4g}",
                 "chosen" if choice.get("chosen") is not None
                 and float(b) == float(choice["chosen"]) else ""]
                for b, v in choice.get("values", {}).items()]
        out_tables.append((f"Beta sweep: {choice['model']} on {choice['dataset']}",
                           f"{note}; rule: {choice['rule']}", ["beta", choice.get("metric", ""),
                                                                ""], body))
    missing = state.get("unavailable") or {}
    if missing:
        out_tables.append(("Datasets not available on this machine (their runs were skipped)",
                           note, ["dataset", "why"],
                           [[d, " ".join(w.split())[:300]] for d, w in missing.items()]))
    run_body = [[rid, r.get("phase", ""), r.get("status", ""), f"{r.get('wall_s', 0):.1f}",
                 r.get("error", "")] for rid, r in sorted(state["runs"].items())]
    out_tables.append(("Runs: wall time (s) and failures", note,
                       ["run", "phase", "status", "wall s", "error"], run_body))
    return out_tables, claims(state, by), rows


def _add_claims_of_older_state(state: dict[str, Any]) -> None:
    """A benchmark directory written before suites carried ``published`` and ``claims`` gets
    them from the suite of the same name, when it is still known."""
    suite = state["suite"]
    if "claims" in suite or "published" in suite:
        return
    from .benchmark import load_suite
    from .errors import HarnessError

    try:
        known = load_suite(suite["name"])
    except HarnessError:
        return
    suite["claims"], suite["published"] = known.claims, known.published


def _html_page(state: dict[str, Any], machine: str, secs: list[Any],
               found_claims: list[dict[str, str]], figs: list[tuple[str, Path]]) -> str:
    """The self-contained report.html: tables (fitting a 1280 px window), claims, figures
    embedded as data URIs."""
    suite = state["suite"]
    parts = [f"<h1>Benchmark <code>{html.escape(suite['name'])}</code> — budget "
            f"<code>{html.escape(state['budget'])}</code></h1>",
            f"<p>{html.escape(suite.get('description', ''))}</p>",
            f"<p><b>{html.escape(BUDGET_NOTE.get(state['budget'], ''))}</b></p>",
            f"<p>seeds: {html.escape(str(state['seeds']))}; machine: {html.escape(machine)}</p>"]
    for title, note, header, rows_ in secs:
        parts.append(f"<h2>{html.escape(title)}</h2><p><i>{html.escape(note)}</i></p>"
                    + (_html_table(header, rows_) if rows_ else ""))
    if state["budget"] == "smoke":
        parts.append(f"<h2>Claims of the paper</h2><p><i>{html.escape(SMOKE_CLAIMS)}</i></p>")
    else:
        parts.append("<h2>Claims of the paper</h2>")
    parts.append("<ul>" + "".join(
        f"<li><b class='{c['verdict'].replace(' ', '-')}'>{html.escape(c['verdict'])}</b> "
        f"({html.escape(c['dataset'])}): {html.escape(c['claim'])}. "
        f"{html.escape(c['evidence'])}</li>" for c in found_claims) + "</ul>")
    parts.append("<h2>Figures</h2>")
    for cap, p in figs:
        data = base64.b64encode(p.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(cap, quote=True)}' "
                    f"src='data:image/png;base64,{data}'><figcaption>{html.escape(cap)}"
                    "</figcaption></figure>")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(suite['name'])} ({html.escape(state['budget'])})</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 12px}"
            "table{border-collapse:collapse;margin:8px 0;max-width:100%}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;"
            "overflow-wrap:anywhere}th{background:#f3f3f3;text-align:left;cursor:help}"
            "td{font-variant-numeric:tabular-nums}p.keys{font-size:11px;color:#666;margin:0}"
            ".supported{color:green}.not-supported{color:#b00}.not-measured{color:#888}"
            "img{max-width:100%}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    return page


def write_report(out: str | Path) -> dict[str, Path]:
    """Write report.{md,csv,json,html} and figures/ into the benchmark directory ``out``."""
    from .atomic import atomic_write_text
    from .benchmark import STATE_FILE
    from .errors import HarnessError

    out = Path(out)
    if not (out / STATE_FILE).is_file():
        raise HarnessError(f"'{out}' is not a benchmark directory ({STATE_FILE} missing)")
    state = json.loads((out / STATE_FILE).read_text())
    _add_claims_of_older_state(state)
    secs, found_claims, rows = sections(state, out)
    suite = state["suite"]
    machine = ", ".join(f"{k}: {v}" for k, v in state.get("machine", {}).items())
    head = (f"# Benchmark `{suite['name']}` — budget `{state['budget']}`\n\n"
            f"{suite.get('description', '')}\n\n"
            f"- {BUDGET_NOTE.get(state['budget'], '')}\n- seeds: {state['seeds']}; jobs: "
            f"{state.get('jobs')}; threads per run: {state.get('threads_per_run')}\n"
            f"- machine: {machine}\n- extra --set: {state.get('sets') or 'none'}\n")
    md = [head]
    for title, note, header, table in secs:
        keys = _keys_line(header)
        md.append(f"\n## {title}\n\n_{note}_\n\n" + (_md_table(header, table) if table
                                                          else "")
                  + (f"\n_{keys}_\n" if keys and table else ""))
    md.append("\n## Claims of the paper\n\n")
    if state["budget"] == "smoke":
        md.append(f"_{SMOKE_CLAIMS}_\n\n")
    for c in found_claims:
        md.append(f"- **{c['verdict']}** ({c['dataset']}): {c['claim']}. {c['evidence']}\n")
    figs = []
    try:
        figs = figures(state, out)
    except ImportError as exc:
        md.append(f"\n(figures skipped: {exc}; pip install matplotlib)\n")
    md.append("\n## Figures\n\n")
    md += [f"![{cap}]({p.relative_to(out)})\n\n{cap}\n\n" for cap, p in figs]
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json",
             "html": out / "report.html"}
    atomic_write_text(paths["md"], "".join(md))
    csv_text = tables.to_csv(rows).splitlines()
    csv_text[0] += ",budget"
    csv_text[1:] = [line + f",{state['budget']}" for line in csv_text[1:]]
    atomic_write_text(paths["csv"], "\n".join(csv_text) + "\n")
    atomic_write_text(paths["json"], json.dumps(
        {"suite": suite["name"], "budget": state["budget"], "seeds": state["seeds"],
         "machine": state.get("machine"), "rows": rows, "claims": found_claims,
         "beta_selection": state.get("beta_selection", []),
         "runs": state["runs"]}, indent=2, default=str) + "\n")
    page = _html_page(state, machine, secs, found_claims, figs)
    atomic_write_text(paths["html"], page)
    return paths
