"""The paper's AdaBelief (:class:`harness.training.optim.AdaBelief`), against its peer: the same
update, bit for bit, as pytorch-optimizer's ``AdaBelief`` set to that algorithm (the class the
committed runs were trained with), and checkpoints written with that class resume here. The
update's formula is checked in ``test_train.py``."""

from __future__ import annotations

import copy
import subprocess
import sys
from importlib import metadata

import pytest
import torch

from harness.configuration.run_config import TrainConfig
from harness.training.optim import AdaBelief, build_optimizer


def _peer(params, weight_decay: float):
    po = pytest.importorskip("pytorch_optimizer")
    return po.AdaBelief(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-16,
                        weight_decay=weight_decay, weight_decouple=True, fixed_decay=False,
                        rectify=False, ams_bound=False)


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    version = tuple(int(x) for x in metadata.version("pytorch-optimizer").split(".")[:2])
    if version >= (4, 1):  # the version the committed runs used; checked bit for bit
        assert torch.equal(a, b), (a - b).abs().max()
    else:  # 3.6-3.11 order the same operations differently (1.9e-12 relative in float64)
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-15)


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=g)),
            torch.nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(2, generator=g))]


def _grads(params, t: int) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(100 + t)
    grads = [torch.randn(p.shape, generator=g, dtype=p.dtype) * 10.0 ** -(t % 7) for p in params]
    return [None if (t == 3 and i == 1) else x for i, x in enumerate(grads)]  # one idle param


def _steps(opt, params, ts) -> None:
    for t in ts:
        for p, grad in zip(params, _grads(params, t), strict=True):
            p.grad = None if grad is None else grad.clone()
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adabelief_equals_pytorch_optimizer(weight_decay: float) -> None:
    """40 steps with float32 and float64 parameters (two foreach buckets), gradients from 1 to
    1e-6 and a parameter without a gradient at one step: same weights and state."""
    ours, theirs = _params(0), _params(0)
    a, b = AdaBelief(ours, lr=1e-3, weight_decay=weight_decay), _peer(theirs, weight_decay)
    _steps(a, ours, range(40))
    _steps(b, theirs, range(40))
    for p, q in zip(ours, theirs, strict=True):
        _assert_same(p.detach(), q.detach())
        for key in ("exp_avg", "exp_avg_var"):
            _assert_same(a.state[p][key], b.state[q][key])
    assert a.param_groups[0]["step"] == b.param_groups[0]["step"] == 40


def test_a_pytorch_optimizer_checkpoint_resumes_here() -> None:
    """The state of a run trained with pytorch-optimizer's class (what older checkpoints
    hold) loads into this one, and the next steps are the ones that class would take."""
    ours, theirs = _params(1), _params(1)
    b = _peer(theirs, 0.0)
    _steps(b, theirs, range(10))
    with torch.no_grad():
        for p, q in zip(ours, theirs, strict=True):
            p.copy_(q)
    a = AdaBelief(ours)
    a.load_state_dict(copy.deepcopy(b.state_dict()))  # as from a file: nothing shared
    _steps(a, ours, range(10, 20))
    _steps(b, theirs, range(10, 20))
    for p, q in zip(ours, theirs, strict=True):
        _assert_same(p.detach(), q.detach())


def test_adabelief_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="learning rate"):
        AdaBelief([torch.nn.Parameter(torch.zeros(1))], lr=float("nan"))
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.zeros(3).to_sparse()
    with pytest.raises(RuntimeError, match="dense"):
        AdaBelief([p]).step()


EAGER = """
import sys, torch
from harness.configuration.run_config import TrainConfig
from harness.training.optim import build_optimizer
p = torch.nn.Parameter(torch.ones(3))
opt = build_optimizer([p], TrainConfig(compile={compile}))
p.grad = torch.ones(3)
opt.step()
opt.load_state_dict(opt.state_dict())
opt.zero_grad()
print('torch._dynamo' in sys.modules, 'pytorch_optimizer' in sys.modules)
"""


@pytest.mark.parametrize("compile_", [False, True])
def test_an_eager_optimizer_does_not_import_dynamo(compile_: bool) -> None:
    """torch's optimizers import torch._dynamo (~1 s) on their first ``add_param_group``,
    ``state_dict``, ``load_state_dict`` or ``zero_grad``, only to mark them "never compile";
    an eager run skips that, and a compiled one (``train.compile``) leaves torch's way alone."""
    out = subprocess.run([sys.executable, "-c", EAGER.format(compile=compile_)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(compile_), "False"]


def test_compiled_mode_takes_the_eager_shortcut_back() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    build_optimizer(p, TrainConfig())
    build_optimizer(p, TrainConfig(compile=True))
    for name in ("add_param_group", "state_dict", "load_state_dict", "zero_grad"):
        fn = getattr(torch.optim.Optimizer, name).__wrapped__
        assert getattr(fn, "__dynamo_disable", None) is not fn, name
