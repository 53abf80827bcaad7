"""The opt-in compiled mode (``train.compile = true``): ``torch.compile`` on the networks.

What is compiled: the model's child modules that hold parameters (for the built-in
autoencoders: the encoder and the decoder), each in place with ``nn.Module.compile``, so
parameter names, ``state_dict`` keys, checkpoints and saved models are exactly those of
eager mode. The loss around them stays eager on purpose: it draws noise from a CPU
``torch.Generator`` (seeded per step for process-count-independent results) and the rrae
family runs an SVD with data-dependent checks; both split a whole-forward graph (measured:
11 graphs with 7 graph breaks for one VRRAE step, against one graph per network this way).
A model with no child modules holding parameters is compiled whole.

Unsupported set-ups are refused before training with a :class:`ConfigError` saying why and
how to go on (set ``train.compile=false``): a torch without ``nn.Module.compile`` (< 2.2),
Windows, a Python that Dynamo does not support, no C++ compiler for CPU code, no Triton or a
GPU older than compute capability 7.0 for CUDA code, and other device types.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from typing import Any

import torch

from harness.errors import ConfigError

#: compilers inductor's CPU backend can use (``$CXX`` first)
CXX_CANDIDATES = ("c++", "g++", "clang++")

_HINT = "; set train.compile=false to train in eager mode"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would find for CPU code, or None."""
    for name in (os.environ.get("CXX", ""), *CXX_CANDIDATES):
        if name and shutil.which(name):
            return name
    return None


def check_compile_supported(device: Any) -> None:
    """Raise :class:`ConfigError` when ``torch.compile`` cannot run here on ``device``."""
    device = torch.device(device if device is not None else "cpu")
    if not hasattr(torch.nn.Module, "compile"):
        raise ConfigError(f"train.compile needs torch >= 2.2 (nn.Module.compile); this is "
                          f"torch {torch.__version__}{_HINT}")
    if sys.platform == "win32":
        raise ConfigError(f"train.compile is not supported on Windows by this harness{_HINT}")
    try:
        from torch._dynamo import is_dynamo_supported

        supported = is_dynamo_supported()
    except ImportError:  # pragma: no cover - very old torch, caught above
        supported = False
    if not supported:
        raise ConfigError(f"train.compile: torch {torch.__version__} does not support "
                          f"torch.compile on Python {sys.version.split()[0]}{_HINT}")
    if device.type == "cpu":
        if cxx_compiler() is None:
            raise ConfigError("train.compile on CPU needs a C++ compiler (none of $CXX, "
                              f"{', '.join(CXX_CANDIDATES)} is on PATH): install one, e.g. "
                              f"`apt-get install g++`{_HINT}")
    elif device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise ConfigError(f"train.compile on CUDA needs Triton (pip install triton){_HINT}")
        capability = torch.cuda.get_device_capability(device)
        if capability < (7, 0):
            raise ConfigError(f"train.compile on CUDA needs compute capability >= 7.0 "
                              f"(Triton); this GPU has {capability[0]}.{capability[1]}{_HINT}")
    elif device.type != "xpu":
        raise ConfigError(f"train.compile supports cpu, cuda and xpu devices, not "
                          f"'{device.type}'{_HINT}")


def compile_targets(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules :func:`maybe_compile` compiles: the children holding parameters, or the
    model itself when there are none."""
    children = [m for m in model.children() if next(m.parameters(), None) is not None]
    return children or [model]


def maybe_compile(model: torch.nn.Module, cfg: Any, device: Any) -> list[torch.nn.Module]:
    """Compile ``model``'s networks in place when ``cfg.compile`` (a ``TrainConfig``) is
    true; returns the modules compiled (empty when off). Pass the unwrapped model (not its
    DDP wrapper): compiling in place keeps every parameter name unchanged."""
    if not getattr(cfg, "compile", False):
        return []
    check_compile_supported(device)
    targets = compile_targets(model)
    for module in targets:
        module.compile()
    return targets


__all__ = ["check_compile_supported", "compile_targets", "cxx_compiler", "maybe_compile"]
