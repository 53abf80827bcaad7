"""Dependency bounds (issue 9, item 10): every requirement has a lower bound, the lowest set
that ``tox -e lowest`` installs is generated from ``pyproject.toml``, and the features the
bounds were raised for work with what is installed."""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import lowest_constraints  # noqa: E402

COMMITTED = Path(__file__).resolve().parent / "lowest-constraints.txt"


def test_committed_lowest_constraints_match_pyproject() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == lowest_constraints.constraints(), (
        "tests/lowest-constraints.txt is stale: regenerate it with "
        "`python tests/lowest_constraints.py > tests/lowest-constraints.txt`"
    )


def test_every_requirement_has_one_lower_bound() -> None:
    reqs = lowest_constraints.requirements()
    assert len(reqs) >= 15
    for req in reqs:
        lowest_constraints.lower_bound(req)  # raises without one
    with pytest.raises(ValueError, match="needs exactly one lower bound"):
        lowest_constraints.lower_bound("torch")
    with pytest.raises(ValueError, match="needs exactly one lower bound"):
        lowest_constraints.lower_bound("numpy<3")
    assert lowest_constraints.lower_bound("tomli>=2.0; python_version < '3.11'") == (
        "tomli", "2.0", "python_version < '3.11'")


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


@pytest.mark.skipif(os.environ.get("HARNESS_EXPECT_LOWEST") != "1",
                    reason="only in `tox -e lowest` (HARNESS_EXPECT_LOWEST=1)")
def test_the_lowest_set_is_what_is_installed() -> None:
    """In ``tox -e lowest``: pip really installed every lower bound (a silently newer version
    would make that env prove nothing)."""
    wrong = []
    for req in lowest_constraints.requirements():
        name, version, marker = lowest_constraints.lower_bound(req)
        if marker and "python_version < '3.11'" in marker and sys.version_info >= (3, 11):
            continue
        installed = metadata.version(name)
        want = _release(version)
        if _release(installed)[: len(want)] != want or any(_release(installed)[len(want):]):
            wrong.append(f"{name} {installed} (lowest: {version})")
    assert not wrong, "not the lowest versions: " + ", ".join(wrong)


def test_adabelief_honours_maximize() -> None:
    """pytorch-optimizer below 3.6 takes ``maximize=`` into **kwargs (3.1-3.5: silently
    ignored) or refuses it (3.0); the harness passes it, so >=3.6 is the bound."""
    import torch
    from pytorch_optimizer import AdaBelief

    for maximize, sign in ((False, -1.0), (True, 1.0)):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = AdaBelief([p], lr=0.1, eps=1e-16, rectify=False, ams_bound=False,
                        weight_decouple=True, fixed_decay=False, maximize=maximize)
        p.grad = torch.ones(3)
        opt.step()
        assert torch.all(torch.sign(p.detach()) == sign), (maximize, p)


def test_pillow_has_resampling_enum() -> None:
    """``Image.Resampling`` (used to resize dataset images) exists from Pillow 9.1."""
    from PIL import Image

    assert Image.Resampling.BICUBIC is not None
