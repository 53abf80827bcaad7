"""Run folders for the results tests, written by hand in the harness's own format (fast:
no training), so each test can change exactly one thing: the extractor, a sample count, the
thread count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomli_w

FID_STAMP: dict[str, Any] = {
    "protocol_version": 1, "dataset": "fashion-mnist", "image_size": [1, 28, 28],
    "n_samples": 1250, "sampler": "sklearn.mixture.GaussianMixture(full)", "reference": "train",
    "gmm_components": 10, "codes": "model.encode(train)", "metric": "fid", "metric_version": 2,
    "feature_extractor": "domain-cnn v3 penultimate 128", "feature_weights_sha256": "3cfa6717",
    "reference_dataset": {"dataset": "fashion-mnist", "n": 60000, "fingerprint": "1770cc24"},
    "n_reference": 60000, "n_images": 1250, "clamp": "[0, 1] before feature extraction",
}
REC_STAMP: dict[str, Any] = {
    "protocol_version": 1, "dataset": "fashion-mnist", "image_size": [1, 28, 28],
    "split": "test", "n_images": 10000, "method": "model.reconstruct",
    "formula": "100*||X_hat-X||_F/||X||_F over the whole split"}


def write_run(folder: Path, *, model: str = "vrrae", seed: int = 0, fid: float = 50.0,
              rec: float = 30.0, stamp: dict[str, Any] | None = None, threads: int = 1,
              torch: str = "2.14.1", steps: int = 104, metrics_schema: int | None = 1,
              protocol: str = "random-generation") -> Path:
    folder.mkdir(parents=True)
    fid_stamp = {**FID_STAMP, **(stamp or {}), "seed": seed}
    doc: dict[str, Any] = {"run": {"model": model, "dataset": "fashion-mnist", "seed": seed},
                           "results": [
        {"protocol": protocol, "metric": "fid", "value": fid, "source": "fid",
         "higher_is_better": False, "stamp": fid_stamp},
        {"protocol": "reconstruction", "metric": "rec_error_percent", "value": rec,
         "source": "protocol", "higher_is_better": False, "stamp": {**REC_STAMP, "seed": seed}},
    ], "training": {"wall_time": 12.5}}
    if metrics_schema is not None:
        doc["schema"] = metrics_schema
    (folder / "metrics.json").write_text(json.dumps(doc))
    config = {"run": {"model": model, "dataset": "fashion-mnist", "seed": seed},
              "model": {"k": 16}, "data": {"cache": True, "seed": 0, "root": str(folder)},
              "train": {"steps": steps, "batch_size": 576, "lr": 0.001},
              "eval": {"protocols": [protocol, "reconstruction"], "metrics": ["fid"]}}
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    env = {"python": "3.11.7", "platform": "Linux-x86_64", "machine": "x86_64",
           "packages": {"torch": torch, "vrrae-harness": "0.1.0"}, "git_revision": "abc",
           "device": "cpu", "cuda": None, "num_processes": 1, "mixed_precision": "no",
           "torch_threads": threads, "cpu_capability": "AVX2"}
    (folder / "environment.json").write_text(json.dumps(env))
    return folder
