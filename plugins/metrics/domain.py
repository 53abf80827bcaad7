"""Feature extractor ``"domain"``: a small CNN classifier trained on the dataset's own labels.

Why: the paper (A.4) computes FID with an Inception-v3 *fine-tuned to classify the dataset*,
last layer removed. This is the same idea — features that separate the dataset's classes —
at a cost of minutes on a CPU (``inception-finetuned`` is the paper's exact extractor, hours
on a CPU). The recipe (version 3):

* input clamped to [0, 1] and resized to 32×32 (bilinear, antialiased when shrinking);
* three blocks ``Conv3x3 -> BatchNorm -> ReLU -> MaxPool2`` with 24, 48, 96 channels
  (32 -> 16 -> 8 -> 4 pixels), flatten (96×4×4), ``Linear(1536 -> 128) -> BatchNorm ->
  ReLU`` = **the 128-d features**, dropout 0.2, ``Linear(128 -> classes)``;
* the held-out split: ``min(5000, n // 10)`` training images drawn with seed 0 (never fitted);
  the rest is fitted;
* AdamW (lr 3e-3, weight decay 5e-4), batch 128, one-cycle schedule (linear warm-up over the
  first 10 % of the steps, cosine decay to 0), 3 epochs but at least 600 steps; seed 0;
* cross-entropy over the classes, or, for a multi-label dataset (``info.metadata
  ["attributes"]``, labels = bit masks: CelebA's 40 attributes), binary cross-entropy per
  attribute, accuracy = mean per-attribute accuracy;
* weights stored as float16 (version 3; half the bytes), the accuracy measured after the
  rounding.

When a classifier lands well below what the recipe reaches on that kind of data
(:data:`EXPECTED_ACCURACY`), a warning says so: FID differences in a weak feature space are
mostly noise.

The extractor built from this recipe's weights (shipped, cached or trained, one per
dataset) is :class:`.domain_extractor.DomainExtractor`; the weights files
:mod:`.domain_weights`.

Datasets without labels (``num_classes`` None or label -1, e.g. the synthetic bumps) are
refused with a clear error: a feature space not trained on classes gives a number called FID
that means something else.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from harness import api
from harness.api import DatasetInfo
from harness.errors import HarnessError

from .extractor import (
    EVAL_PROGRESS_EVERY_S,
)

RECIPE_VERSION = 3  # bump when the recipe changes: old caches are ignored
WEIGHTS_DTYPE = torch.float16  # how trained weights are stored (and then used, as float32)
SEED = 0
INPUT_SIZE = 32
FEATURE_DIM = 128
N_HOLDOUT = 5_000
EPOCHS = 3
MIN_STEPS = 600
BATCH = 128
LR = 3e-3
WEIGHT_DECAY = 5e-4
WARMUP = 0.1
SHIFT = 0

#: held-out accuracy the recipe reaches (measured: fashion-mnist, digits) or is designed
#: for (mnist, cifar10); a classifier more than ``ACCURACY_MARGIN`` below warns. Other
#: datasets warn below ``GENERIC_FLOOR``.
EXPECTED_ACCURACY = {"mnist": 0.99, "fashion-mnist": 0.91, "cifar10": 0.80, "digits": 0.95}
ACCURACY_MARGIN = 0.03
GENERIC_FLOOR = 0.75


def cache_dir() -> Path:
    """The host's cache folder (:func:`harness.api.cache_dir`)."""
    return Path(api.cache_dir())


def prepare(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and resize to INPUT_SIZE × INPUT_SIZE."""
    x = x.float().clamp(0.0, 1.0)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        shrink = x.shape[-1] > INPUT_SIZE or x.shape[-2] > INPUT_SIZE
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=shrink)  # fmt: skip
    return x


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.MaxPool2d(2)]  # fmt: skip


class DomainClassifier(nn.Module):
    """The recipe's network (module docstring); ``features`` is the 128-d penultimate layer."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_block(channels, 24), *_block(24, 48), *_block(48, 96),  # 96 x 4 x 4
            nn.Flatten(), nn.Linear(96 * 4 * 4, FEATURE_DIM, bias=False),
            nn.BatchNorm1d(FEATURE_DIM), nn.ReLU(),
        )  # fmt: skip
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def _fetch(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[int(i)] for i in indices]
    images = torch.stack([torch.as_tensor(it[0]) for it in items]).float()
    labels = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
    return images, labels


def fingerprint(dataset: Dataset, n: int) -> str:
    """A cheap content hash of a dataset (six images and labels): caches keyed by name and
    size alone would serve a stale entry for different data under the same name."""
    h = hashlib.sha256()
    for i in sorted({0, 1, 2, n // 2, n - 2, n - 1} & set(range(n))):
        image, label = dataset[i]
        h.update(torch.as_tensor(image).float().numpy().tobytes())
        h.update(str(int(label)).encode())
    return h.hexdigest()[:16]


def dataset_identity(dataset: Dataset, info: DatasetInfo) -> dict[str, Any]:
    """What identifies a dataset in stamps and cache keys: name, shape, size, fingerprint."""
    n = len(dataset)  # type: ignore[arg-type]
    return {"dataset": info.name, "shape": list(info.shape), "n": n,
            "fingerprint": fingerprint(dataset, n)}  # fmt: skip


def check_labelled(dataset: Dataset, info: DatasetInfo, what: str) -> None:
    """Refuse unlabelled data (num_classes None or label -1) with a clear error."""
    n = len(dataset)  # type: ignore[arg-type]
    unlabelled = info.num_classes is None
    if not unlabelled and n:
        probe = _fetch(dataset, torch.arange(min(n, 32)))[1]
        unlabelled = bool((probe < 0).any())
    if unlabelled:
        hint = ", or the gaussian-fit metric for bumps" if "spread" in info.metadata else ""
        raise HarnessError(
            f"dataset '{info.name}' has no labels, so the '{what}' FID extractor (a classifier "
            "trained on the dataset's labels, paper A.4) cannot be built. Use the "
            f"fid-inception metric (ImageNet Inception-v3) instead{hint}"
        )
    if n < 20:
        raise HarnessError(
            f"the '{what}' FID extractor needs a labelled training set of at least 20 images; "
            f"'{info.name}' has {n}"
        )


def accuracy_warning(name: str, accuracy: float, n_fit: int) -> str | None:
    """The warning for a classifier well below what the recipe reaches, or None."""
    expected = EXPECTED_ACCURACY.get(name)
    floor = expected - ACCURACY_MARGIN if expected is not None else GENERIC_FLOOR
    if not math.isfinite(accuracy) or accuracy >= floor:
        return None
    why = (f"the recipe reaches {expected:.2f} on {name}" if expected is not None else
           f"the recipe reaches >= 0.80 on the paper's datasets (CIFAR-10 the hardest), and "
           f"this one ({n_fit} fitted images) lands below {GENERIC_FLOOR:.2f}")  # fmt: skip
    return (f"the domain FID extractor of '{name}' has held-out accuracy {accuracy:.3f}, well "
            f"below what its recipe reaches ({why}): a weak feature space makes FID "
            "differences between models mostly noise (a small or unusual dataset?)")


def one_cycle(step: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over WARMUP of the steps, then cosine to 0."""
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def random_shift(x: torch.Tensor, gen: torch.Generator, shift: int = SHIFT) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels (zero padding), seeded."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    idx = torch.arange(n)[:, None, None, None]
    return padded[idx, torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def fit_epochs(net: nn.Module, fit_x: torch.Tensor, fit_y: torch.Tensor, *, epochs: int,
               opt: Any, sched: Any, gen: torch.Generator, device: Any, bar: Any,
               batch: int, augment: Any = None, loss_fn: Any = None) -> None:  # fmt: skip
    """The classifier training loop both trained extractors share: seeded shuffled batches
    (``gen``), optional ``augment(x, gen)``, ``loss_fn(logits, targets)`` (cross-entropy by
    default; binary cross-entropy for attribute targets), one scheduler step per batch."""
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    n_fit = fit_x.shape[0]
    for _epoch in range(epochs):
        perm = torch.randperm(n_fit, generator=gen)
        for i in range(0, n_fit, batch):
            idx = perm[i : i + batch]
            if idx.numel() < 2:  # BatchNorm needs two samples
                continue
            x = fit_x[idx] if augment is None else augment(fit_x[idx], gen)
            loss = loss_fn(net(x.to(device)), fit_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.postfix(f"loss {loss.item():.3f}")
            bar.advance()


# ------------------------------------------------------------------ multi-label (attributes)
def attribute_names(info: DatasetInfo) -> list[str] | None:
    """The binary attributes of a multi-label dataset (``info.metadata["attributes"]``; its
    int labels are bit masks, bit i = attribute i), or None for a one-class-per-image one."""
    names = info.metadata.get("attributes")
    return [str(n) for n in names] if isinstance(names, list | tuple) and names else None


def attribute_targets(labels: torch.Tensor, n_attributes: int) -> torch.Tensor:
    """Bit-mask labels (N,) -> float 0/1 targets (N, n_attributes)."""
    bits = torch.arange(n_attributes, dtype=torch.long)
    return ((labels.long()[:, None] >> bits) & 1).float()


def _attribute_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets)


def train_classifier(
    fit_x: torch.Tensor, fit_y: torch.Tensor, hold_x: torch.Tensor, hold_y: torch.Tensor,
    channels: int, num_classes: int, *, progress: bool = False, what: str = "",
    device: Any = None, multi_label: bool = False,
) -> tuple[DomainClassifier, float]:  # fmt: skip
    """Train the recipe's classifier on prepared (32×32) images; returns it and its held-out
    accuracy, measured with the weights rounded to :data:`WEIGHTS_DTYPE` as they are stored.
    ``multi_label``: ``fit_y``/``hold_y`` are (N, num_classes) 0/1 targets, binary
    cross-entropy. Deterministic for a given input on one machine (seeded, fixed order)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    n_fit = fit_x.shape[0]
    steps_per_epoch = math.ceil(n_fit / BATCH)
    epochs = max(EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))
    total = epochs * steps_per_epoch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = DomainClassifier(channels, num_classes).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: one_cycle(s, total))
        gen = torch.Generator().manual_seed(SEED + 1)
        net.train()
        with api.Progress(total, what=f"[eval] training the domain FID classifier of '{what}'",
                          every_s=EVAL_PROGRESS_EVERY_S, leave=False,
                          enabled=progress) as bar:  # fmt: skip
            fit_epochs(net, fit_x, fit_y, epochs=epochs, opt=opt, sched=sched, gen=gen,
                       device=device, bar=bar, batch=BATCH, augment=random_shift,
                       loss_fn=_attribute_loss if multi_label else None)  # fmt: skip
        net = net.cpu().eval()
        net.load_state_dict(stored_state(net.state_dict()))
        accuracy = classifier_accuracy(net, hold_x, hold_y)
    return net, accuracy


def stored_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights as stored: floating tensors rounded to :data:`WEIGHTS_DTYPE` (half the
    bytes; the held-out accuracy is measured after the rounding), integers kept."""
    return {k: (v.detach().cpu().to(WEIGHTS_DTYPE) if v.is_floating_point() else
                v.detach().cpu()).contiguous() for k, v in state.items()}  # fmt: skip


@torch.no_grad()
def classifier_accuracy(net: DomainClassifier, x: torch.Tensor, y: torch.Tensor,
                        device: Any = None) -> float:  # fmt: skip
    """Fraction of ``x`` (any size; prepared inside) classified as ``y``; for 0/1 attribute
    targets ``y`` (N, A) the mean per-attribute accuracy (logit > 0); nan when empty."""
    if x.shape[0] == 0:
        return float("nan")
    net.eval()
    device = torch.device(device) if device is not None else next(net.parameters()).device
    logits = torch.cat([net(x[i : i + 512].to(device)).cpu()
                        for i in range(0, x.shape[0], 512)])  # fmt: skip
    if y.ndim == 2:
        return float(((logits > 0).float() == y).float().mean())
    return float((logits.argmax(1) == y).float().mean())


def split_indices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, fitted) indices: ``min(N_HOLDOUT, n // 10)`` held out, seed 0."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED))
    n_hold = min(N_HOLDOUT, n // 10)
    return order[:n_hold], order[n_hold:]


def extractor_training_split(reference: Dataset, info: DatasetInfo) -> Dataset:
    """The split the extractor trains on: the dataset's whole training split. A run with
    ``data.validation`` scores against the training split minus its validation part (a
    ``Subset`` of the whole one); its extractor is the whole split's, so sweep runs and
    final runs are scored in one feature space."""
    from torch.utils.data import Subset

    if "validation" in info.metadata and isinstance(reference, Subset):
        return reference.dataset
    return reference


def train_weights(train: Dataset, info: DatasetInfo, *, progress: bool = False,
                  device: Any = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:  # fmt: skip
    """Train the recipe on ``train``: (stored weights, safetensors metadata). The metadata
    holds what building and describing the extractor needs (classes, accuracy, sizes)."""
    check_labelled(train, info, "domain")
    n = len(train)  # type: ignore[arg-type]
    hold, fit = split_indices(n)
    hold_x, hold_y = _fetch(train, hold)
    fit_x, fit_y = _fetch(train, fit)
    fit_x, hold_x = prepare(fit_x), prepare(hold_x)  # resize once, not every epoch
    if (fit_y < 0).any() or (hold_y < 0).any():
        raise HarnessError(f"dataset '{info.name}' has unlabelled images (label -1)")
    attributes = attribute_names(info)
    if attributes:
        num_classes = len(attributes)
        fit_y, hold_y = (attribute_targets(y, num_classes) for y in (fit_y, hold_y))
    else:
        num_classes = int(max(info.num_classes or 0, int(fit_y.max()) + 1))
    net, accuracy = train_classifier(fit_x, fit_y, hold_x, hold_y, info.shape[0],
                                     num_classes, progress=progress, what=info.name,
                                     device=device, multi_label=bool(attributes))  # fmt: skip
    meta = {"num_classes": str(num_classes), "accuracy": repr(accuracy),
            "n_fit": str(len(fit)), "n_holdout": str(len(hold)),
            "recipe_version": str(RECIPE_VERSION), "dataset": info.name,
            "shape": json.dumps(list(info.shape)), "n_train": str(n),
            "head_fingerprint": head_fingerprint(train),
            "task": "multi-label" if attributes else "classes"}  # fmt: skip
    return stored_state(net.state_dict()), meta


def head_fingerprint(dataset: Dataset) -> str:
    """A hash of the first three images and labels: equal for a dataset and the first-n
    truncations of it (``data.n_train``), different for other data under the same name."""
    h = hashlib.sha256()
    for i in range(min(3, len(dataset))):  # type: ignore[arg-type]
        image, label = dataset[i]
        h.update(torch.as_tensor(image).float().numpy().tobytes())
        h.update(str(int(label)).encode())
    return h.hexdigest()[:16]
