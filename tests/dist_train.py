"""Train the real ae, vae, rrae, vrrae, lorae, wae and rae (gp) models briefly and write what the two-process
equivalence test compares. Run with plain ``python`` (one process) or under
``torchrun --nproc_per_node 2`` / ``accelerate launch --multi_gpu --num_processes 2``.

Writes, under ``--out``: ``<model>/losses.json`` (every step's loss parts, main process) and
``<model>/weights-rank<r>.safetensors`` (every process's trained, calibrated state dict,
inference basis included).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from dist_toys import make_config, make_splits  # noqa: E402

from harness.rundir import checkpoints as ckpt  # noqa: E402
from harness.training.loop import make_accelerator, seed_everything, train  # noqa: E402

MODELS = {
    "ae": ("AE", {"k": 3}),
    "vae": ("VAE", {"k": 3, "beta": 1e-2}),
    "rrae": ("RRAE", {"k": 3, "latent_dim": 12}),
    "vrrae": ("VRRAE", {"k": 3, "latent_dim": 12, "beta": 1e-2}),
    # the baselines' batch-level terms (nuclear norm, MMD) and per-sample means are global
    "lorae": ("LoRAE", {"k": 3, "reg_weight": 0.5}),
    "wae": ("WAE", {"k": 3, "reg_weight": 5.0}),
    "rae": ("RAE", {"k": 3, "reg": "gp", "beta": 0.1, "reg_weight": 0.1}),
}


def check_guard(out: Path) -> None:
    """A plain ``Accelerator()`` on a CPU-only multi-process launch sees one process (no DDP)
    under Accelerate 1.x while torch.distributed runs two: ``train`` must refuse it, not train
    silently wrong. Accelerate 0.x picks MULTI_CPU by itself and sees both: ``train`` must then
    accept it. ``guard.json`` records which case this was and what ``train`` did."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from harness.errors import HarnessError

    plain = Accelerator()
    seen, world = plain.num_processes, int(os.environ["WORLD_SIZE"])
    splits = make_splits(n_train=40)
    model = zoo_model("ae", splits)
    try:
        train(model, splits, make_config(steps=1, batch_size=16), out / "guard", accelerator=plain)
        refused = None
    except HarnessError as exc:
        refused = str(exc)
    if (refused is None) != (seen == world):
        raise SystemExit(f"train {'accepted' if refused is None else 'refused'} an Accelerator "
                         f"that sees {seen} of {world} processes: {refused}")
    if os.environ.get("RANK", "0") == "0":
        out.mkdir(parents=True, exist_ok=True)
        (out / "guard.json").write_text(json.dumps({"seen": seen, "world": world,
                                                    "refused": refused}))
    AcceleratorState._reset_state(True)  # the process group stays; make_accelerator reuses it


def zoo_model(name: str, splits):
    from harness_plugins.autoencoders import models as zoo

    _, options = MODELS[name]
    cls = zoo.MODELS[name]
    seed_everything(0)
    return cls.from_config(cls.Config(arch="mlp", hidden=24, **options), splits.info)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        check_guard(Path(args.out))
    accelerator = make_accelerator(make_config().train)
    splits = make_splits(n_train=40)  # 2 batches of 16 per epoch, 8 images dropped
    for name in args.models.split(","):
        model = zoo_model(name, splits)
        config = make_config(seed=0, steps=args.steps, batch_size=args.batch_size,
                             log_every=1, checkpoint_every=4, lr=3e-3)
        train_and_record(model, splits, config, Path(args.out) / name, accelerator)
    interrupted_then_resumed(accelerator, splits, args, Path(args.out) / "vrrae-ctrl-c")


def train_and_record(model, splits, config, out: Path, accelerator) -> None:  # type: ignore[no-untyped-def]
    """Train; write this process's weights and (main process) every step's loss parts."""
    records: list[dict] = []
    result = train(model, splits, config, out / "run", accelerator=accelerator,
                   on_log=records.append)
    state = {k: v.detach().contiguous().cpu() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / f"weights-rank{accelerator.process_index}.safetensors"))
    if accelerator.is_main_process:
        doc = {"world_size": result.world_size, "losses": [r["loss"] for r in records]}
        (out / "losses.json").write_text(json.dumps(doc))
    accelerator.wait_for_everyone()


def interrupted_then_resumed(accelerator, splits, args, out: Path) -> None:
    """Ctrl-C reaching only the *last* process, during the forward of ctx.step 5: all
    processes must stop together after step 6 (they agree at the step boundary), save one
    checkpoint, raise KeyboardInterrupt; resuming then ends on the uninterrupted weights."""
    config = make_config(seed=0, steps=args.steps, batch_size=args.batch_size, log_every=1,
                         checkpoint_every=4, lr=3e-3)
    model = zoo_model("vrrae", splits)
    if accelerator.process_index == accelerator.num_processes - 1:
        forward = model.forward

        def forward_then_ctrl_c(x, ctx):
            if ctx.step == 5:
                os.kill(os.getpid(), signal.SIGINT)
            return forward(x, ctx)

        model.forward = forward_then_ctrl_c
    try:
        train(model, splits, config, out / "run", accelerator=accelerator)
    except KeyboardInterrupt:
        pass
    else:
        raise SystemExit("Ctrl-C did not interrupt training")
    stopped_at = ckpt.latest_checkpoint(out / "run" / "checkpoints").name
    result = train(zoo_model("vrrae", splits), splits, config, out / "run",
                   accelerator=accelerator, resume=True)
    state = {k: v.detach().contiguous().cpu() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / f"weights-rank{accelerator.process_index}.safetensors"))
    if accelerator.is_main_process:
        (out / "stopped_at.txt").write_text(f"{stopped_at} {result.start_step}")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
