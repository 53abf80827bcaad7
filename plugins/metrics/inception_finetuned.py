"""Feature extractor ``"inception-finetuned"``: the paper's exact FID extractor (A.4).

Inception-v3 **starting from the pytorch-fid weights** (:mod:`.inception`; nothing is
downloaded: without the weights a clear error says how to get them), with a new linear head
``2048 -> classes`` on its pool3 features, fine-tuned on the dataset's labels; the FID then
uses the fine-tuned pool3 features (the last layer removed). **A GPU is recommended**: every
image is resized to 299×299, and fine-tuning takes minutes on a GPU but hours on a CPU (a
warning says so when it runs on a CPU).

Recipe (version 1): the held-out split of :func:`.domain.split_indices` (seed 0); up to
``N_FIT`` fitted images (the first of the seeded order); ``EPOCHS`` epoch(s), batch
``BATCH``, AdamW (lr 1e-4 for the Inception body, 1e-3 for the head), cosine decay; the
preprocessing is pytorch-fid's (clamp to [0, 1], grayscale repeated to 3 channels, bilinear
resize to 299, ``2x - 1``). Held-out accuracy on up to ``N_EVAL`` held-out images.

Trained once per dataset and base weights, cached as safetensors
(``$HARNESS_CACHE_DIR/fid-inception-finetuned/``); the stamp records the fine-tuned weights'
sha256, the base weights' sha256 and the held-out accuracy.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from harness import api
from harness.api import DatasetInfo
from harness.errors import HarnessError

from .domain import (
    _fetch,
    accuracy_warning,
    cache_dir,
    check_labelled,
    dataset_identity,
    fit_epochs,
    split_indices,
)
from .extractor import (
    EVAL_PROGRESS_EVERY_S,
    FeatureExtractor,
    tensors_sha256,
    write_safetensors_atomic,
)

RECIPE_VERSION = 1
SEED = 0
N_FIT = 20_000
N_EVAL = 2_000
EPOCHS = 1
BATCH = 32
LR_BODY = 1e-4
LR_HEAD = 1e-3


class FinetunedInception(nn.Module):
    def __init__(self, body: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.body = body  # InceptionPool3: images -> (N, 2048)
        self.head = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FinetunedInceptionExtractor(FeatureExtractor):
    """Pool3 features (2048) of Inception-v3 fine-tuned on the dataset's labels."""

    name = "inception-finetuned"
    dim = 2048
    network: FinetunedInception

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.body(x)

    @classmethod
    def for_dataset(cls, train: Dataset, info: DatasetInfo, *, fid_weights: str | None = None,
                    progress: bool = False, device: Any = None) -> FinetunedInceptionExtractor:
        from safetensors import safe_open
        from safetensors.torch import load_file

        from .inception import InceptionExtractor, missing_weights_message

        check_labelled(train, info, "inception-finetuned")
        try:
            base = InceptionExtractor.from_weights(fid_weights)
        except HarnessError as exc:
            if "were not found" in str(exc):
                raise HarnessError(
                    "the inception-finetuned FID extractor starts from the pytorch-fid "
                    f"Inception-v3 weights: {missing_weights_message()}"
                ) from exc
            raise
        base_sha = base.describe()["feature_weights_sha256"]
        fields = {**dataset_identity(train, info), "base": base_sha, "seed": SEED,
                  "version": RECIPE_VERSION}  # fmt: skip
        key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in info.name)
        path = cache_dir() / "fid-inception-finetuned" / f"{safe}-v{RECIPE_VERSION}-{key}.safetensors"
        start = time.perf_counter()
        with api.build_once(path, waiting=f"[eval] waiting for another process fine-tuning "
                            f"Inception on '{info.name}' ({path})") as trained:
            if trained:
                _finetune_and_save(base.network, train, info, path, progress, device)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        net = FinetunedInception(base.network, int(meta["num_classes"]))
        state = load_file(str(path))
        net.load_state_dict(state)
        accuracy = float(meta["accuracy"])
        n_fit = int(meta["n_fit"])
        warning = accuracy_warning(info.name, accuracy, n_fit)
        if warning:
            warnings.warn(warning.replace("domain FID extractor", "inception-finetuned "
                                          "extractor"), stacklevel=2)  # fmt: skip
        description = {
            "feature_extractor": f"inception-v3 fine-tuned on the dataset v{RECIPE_VERSION} "
                                 "pool3 2048",
            "feature_weights_sha256": tensors_sha256(state),
            "base_weights_sha256": base_sha,
            "extractor_accuracy": round(accuracy, 6),
            "extractor_n_fit": n_fit,
            "extractor_n_holdout": int(meta["n_holdout"]),
        }  # fmt: skip
        provenance = {"feature_weights": str(path),
                      "base_weights": base.provenance().get("feature_weights"),
                      "extractor": "trained" if trained else "loaded from cache",
                      "extractor_seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
        return cls(net, description, provenance)


def _finetune_and_save(body: nn.Module, train: Dataset, info: DatasetInfo, path: Path,
                       progress: bool, device: Any) -> None:  # fmt: skip
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cpu":
        warnings.warn("fine-tuning Inception-v3 (inception-finetuned FID extractor) on a CPU "
                      "takes hours on a full dataset; a GPU is recommended", stacklevel=3)
    hold, fit = split_indices(len(train))  # type: ignore[arg-type]
    fit, hold = fit[:N_FIT], hold[:N_EVAL]
    fit_x, fit_y = _fetch(train, fit)
    hold_x, hold_y = _fetch(train, hold)
    num_classes = int(max(info.num_classes or 0, int(fit_y.max()) + 1))
    steps_per_epoch = math.ceil(fit_x.shape[0] / BATCH)
    total = EPOCHS * steps_per_epoch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = FinetunedInception(body, num_classes).to(device)
        opt = torch.optim.AdamW([{"params": net.body.parameters(), "lr": LR_BODY},
                                 {"params": net.head.parameters(), "lr": LR_HEAD}])
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        gen = torch.Generator().manual_seed(SEED + 1)
        net.train()
        with api.Progress(total, what=f"[eval] fine-tuning Inception-v3 on '{info.name}'",
                          every_s=EVAL_PROGRESS_EVERY_S, leave=False,
                          enabled=progress) as bar:  # fmt: skip
            fit_epochs(net, fit_x, fit_y, epochs=EPOCHS, opt=opt, sched=sched, gen=gen,
                       device=device, bar=bar, batch=BATCH)
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(hold_x[i : i + 64].to(device)).argmax(1).cpu()
                              for i in range(0, hold_x.shape[0], 64)]) if len(hold) else None
    accuracy = float((pred == hold_y).float().mean()) if pred is not None else float("nan")
    meta = {"num_classes": str(num_classes), "accuracy": repr(accuracy), "n_fit": str(len(fit)),
            "n_holdout": str(len(hold)), "recipe_version": str(RECIPE_VERSION)}  # fmt: skip
    write_safetensors_atomic(path, {k: v for k, v in net.cpu().state_dict().items()}, meta)
