"""``harness leaderboard``: two labs' exports of the same suite merge into one ranking; a
changed extractor or sample count splits it, with the reason ``harness diff`` gives; the page
is checked in a real headless Chromium."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cli_helpers import assert_error_line, cli  # noqa: E402
from headless_chromium import chromium, needs_chromium  # noqa: E402
from results_helpers import write_run  # noqa: E402

FID = "fashion-mnist/random-generation/fid"


def _lab(root: Path, name: str, fids: dict[str, list[float]], **kwargs) -> Path:
    """One lab: runs of each model (one per seed), exported with --lab."""
    runs = []
    for model, values in fids.items():
        for seed, fid in enumerate(values):
            runs.append(str(write_run(root / name / f"{model}-{seed}", model=model, seed=seed,
                                      fid=fid, **kwargs)))
    out = root / f"export-{name}"
    res = cli("export", *runs, "--out", str(out), "--lab", name)
    assert res.code == 0, res.err
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("labs")
    labs = {
        "lab-a": _lab(root, "lab-a", {"vrrae": [40.0, 42.0], "vae": [60.0, 64.0]}),
        # another machine: other torch, other thread count; the same tasks
        "lab-b": _lab(root, "lab-b", {"rrae": [50.0, 51.0, 52.0]}, threads=2, torch="2.2.0"),
        # a retrained extractor
        "lab-c": _lab(root, "lab-c", {"ae": [30.0]}, stamp={"feature_weights_sha256": "beef"}),
        # a smaller sample
        "lab-d": _lab(root, "lab-d", {"wae": [20.0]},
                      stamp={"n_samples": 64, "n_images": 64}),
    }
    out = root / "site"
    res = cli("leaderboard", *map(str, labs.values()), "--out", str(out))
    assert res.code == 0, res.err
    return out, labs


def _section(md: str, name: str) -> str:
    part = md[md.index(f"## {name}\n"):]
    return part[:part.index("\n## ")] if "\n## " in part else part


def test_two_labs_merge_and_the_others_are_listed_with_the_reason(site) -> None:
    out, labs = site
    md = (out / "leaderboard.md").read_text()
    fid = _section(md, FID)
    ranking = [line for line in fid.splitlines() if line.startswith("| ") and "rank" not in line]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in ranking]
    assert [(c[0], c[1], c[4]) for c in cells] == [("1", "vrrae", "lab-a"), ("2", "rrae", "lab-b"),
                                                  ("3", "vae", "lab-a")]
    # lab A's two seeds pooled: mean 41, t(0.975, 1) = 12.7062, std sqrt(2)
    assert cells[0][2] == "41 [28.29, 53.71]" and cells[0][3] == "2"
    assert cells[1][2].startswith("51 [") and cells[1][3] == "3"
    assert "lower is better" in fid and "labs: lab-a, lab-b" in fid
    excluded = fid[fid.index("Not comparable with this ranking:"):]
    ae = next(line for line in excluded.splitlines() if line.startswith("- ae (lab-c"))
    assert "extractor weights differ: feature_weights_sha256 3cfa6717 vs beef" in ae
    wae = next(line for line in excluded.splitlines() if line.startswith("- wae (lab-d"))
    assert "sample counts differ: n_samples 1250 vs 64; n_images 1250 vs 64" in wae
    # the reconstruction task is shared by all four labs: one ranking, nothing excluded
    rec = _section(md, "fashion-mnist/reconstruction/rec_error_percent")
    assert "Not comparable" not in rec and "labs: lab-a, lab-b, lab-c, lab-d" in rec


def test_the_reason_is_the_one_harness_diff_gives(site) -> None:
    out, labs = site
    same = cli("diff", str(labs["lab-a"]), str(labs["lab-b"]))
    assert same.code == 0, same.out
    other = cli("diff", str(labs["lab-a"]), str(labs["lab-c"]))
    assert other.code == 1
    assert "  1. extractor weights differ: feature_weights_sha256 3cfa6717 vs beef" in other.out


def test_out_holding_other_files_is_refused(site, tmp_path: Path) -> None:
    _, labs = site
    (tmp_path / "mine.txt").write_text("x")
    assert_error_line(cli("leaderboard", str(labs["lab-a"]), "--out", str(tmp_path)), 2,
                      "holds other files")
    # a leaderboard folder is replaced as a whole
    again = cli("leaderboard", str(labs["lab-a"]), "--out", str(site[0]))
    assert again.code == 0 and "labs: lab-a\n" in (site[0] / "leaderboard.md").read_text()
    cli("leaderboard", *map(str, labs.values()), "--out", str(site[0]))


@needs_chromium
def test_the_page_in_headless_chromium(site) -> None:
    out, _ = site
    driver = chromium(1280, 2400)
    try:
        driver.get((out / "index.html").as_uri())
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width
        rows = driver.execute_script(
            f"return [...document.querySelectorAll(\"section[id='{FID.replace('/', '-')}'] "
            "table.ranking tbody tr\")].map(r => [...r.cells].map(c => c.innerText))")
        assert [(r[0], r[1], r[4]) for r in rows] == [("1", "vrrae", "lab-a"),
                                                      ("2", "rrae", "lab-b"), ("3", "vae", "lab-a")]
        excluded = driver.execute_script(
            f"return [...document.querySelectorAll(\"section[id='{FID.replace('/', '-')}'] "
            "ul.excluded li\")].map(li => li.innerText)")
        assert len(excluded) == 2
        assert any(t.startswith("ae (lab-c") and "extractor weights differ" in t
                   for t in excluded), excluded
        rights = driver.execute_script(
            "return [...document.querySelectorAll('table')].map("
            "t => t.getBoundingClientRect().right)")
        assert rights and max(rights) <= width, rights
    finally:
        driver.quit()


def test_two_labs_exports_of_table_1_merge(tmp_path: Path) -> None:
    """The committed Table 1 at two budgets, exported as two labs: the same tasks, so one
    ranking per task, each lab's training length beside its numbers."""
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    for lab, name in (("lab-cpu", "paper-synthetic-cpu"), ("lab-paper", "paper-synthetic-paper")):
        assert cli("export", str(results / name), "--out", str(tmp_path / lab),
                   "--lab", lab).code == 0
    assert cli("diff", str(tmp_path / "lab-cpu"), str(tmp_path / "lab-paper")).code == 0
    res = cli("leaderboard", str(tmp_path / "lab-cpu"), str(tmp_path / "lab-paper"),
              "--out", str(tmp_path / "site"))
    assert res.code == 0, res.err
    rec = _section((tmp_path / "site" / "leaderboard.md").read_text(),
                   "bumps/reconstruction/rec_error_percent")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in rec.splitlines()
            if line.startswith("| ") and "rank" not in line]
    assert [(r[1], r[4], r[6], r[2].split()[0]) for r in rows] == [
        ("vrrae", "lab-paper", "steps 2000", "5.336"), ("vrrae", "lab-cpu", "steps 1000", "7.162"),
        ("ae", "lab-paper", "steps 2000", "13.55"), ("ae", "lab-cpu", "steps 1000", "13.57"),
        ("vae", "lab-paper", "steps 2000", "14.97"), ("vae", "lab-cpu", "steps 1000", "16.14"),
        ("rrae", "lab-cpu", "steps 1000", "50.7"), ("rrae", "lab-paper", "steps 2000", "51.44")]
    assert "Not comparable" not in rec


def test_a_retrained_extractor_splits_the_committed_fashion_mnist_results(tmp_path: Path) -> None:
    """Table 2 (paper-real) was scored with the domain extractor v2, the baselines with v3:
    their reconstruction errors share one ranking, their FIDs do not, and the page says why."""
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    for lab, name in (("lab-table2", "paper-real-fashion-mnist-cpu"),
                      ("lab-baselines", "baselines-cpu-fashion-mnist")):
        assert cli("export", str(results / name), "--out", str(tmp_path / lab),
                   "--lab", lab).code == 0
    res = cli("leaderboard", str(tmp_path / "lab-table2"), str(tmp_path / "lab-baselines"),
              "--out", str(tmp_path / "site"))
    assert res.code == 0, res.err
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    rec = _section(md, "fashion-mnist/reconstruction/rec_error_percent")
    assert "labs: lab-baselines, lab-table2" in rec and "Not comparable" not in rec
    fid = _section(md, "fashion-mnist/random-generation/fid")
    assert "labs: lab-baselines\n" in fid
    excluded = [line for line in fid.splitlines() if line.startswith("- ")]
    assert sorted(line.split()[1] for line in excluded) == ["ae", "rrae", "vae", "vrrae"]
    assert all("(lab-table2" in line and "extractor weights differ: feature_extractor "
               "domain-cnn v3 penultimate 128 vs domain-cnn v2 penultimate 128" in line
               for line in excluded), excluded
