"""Train the built-in dcgan and ddpm briefly (steps they own: two optimizers, EMA) and write
what the two-process equivalence test compares. Run with plain ``python`` (one process) or
under ``torchrun --nproc_per_node 2``. Writes ``<model>/losses.json`` (main process) and
``<model>/weights-rank<r>.safetensors``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from dist_toys import make_config, make_splits  # noqa: E402
from dist_train import train_and_record  # noqa: E402

from harness.training.loop import make_accelerator, seed_everything  # noqa: E402

MODELS = {"dcgan": ("dcgan:DCGAN", {"z_dim": 4, "channels": 16}),
          "ddpm": ("ddpm:DDPM", {"channels": 16, "timesteps": 50, "sample_steps": 2})}


def build(name: str, splits):  # type: ignore[no-untyped-def]
    import importlib

    target, options = MODELS[name]
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(f"harness_plugins.generative.{module}"), attr)
    seed_everything(0)
    return cls.from_config(cls.Config(**options), splits.info)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    accelerator = make_accelerator(make_config().train)
    splits = make_splits(n_train=40)
    for name in MODELS:
        config = make_config(seed=0, steps=6, batch_size=16, log_every=1, checkpoint_every=4,
                             lr=3e-3, grad_clip=1.0)
        train_and_record(build(name, splits), splits, config, Path(args.out) / name,
                         accelerator)


if __name__ == "__main__":
    main()
