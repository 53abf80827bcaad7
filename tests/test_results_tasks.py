"""Versioned tasks: a number-moving default cannot change without a version bump, and a
task's pins say which part of its definition differs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from harness.host.plugins import get_host
from harness.results import tasks

RECORDED = Path(__file__).with_name("task_defaults.json")

FID_STAMP = {
    "protocol_version": 1, "seed": 0, "dataset": "fashion-mnist", "image_size": [1, 28, 28],
    "n_samples": 1250, "sampler": "GMM", "gmm_components": 10, "reference": "train",
    "metric": "fid", "metric_version": 2, "feature_extractor": "domain-cnn v3 penultimate 128",
    "feature_weights_sha256": "3cfa67", "reference_dataset": {"n": 60000, "fingerprint": "17"},
    "n_reference": 60000, "n_images": 1250, "clamp": "[0, 1]",
}


def test_builtin_defaults_match_their_recorded_versions() -> None:
    """The guard itself: change a default of a built-in protocol or metric without bumping its
    version and this fails, naming the component and what to do."""
    current = tasks.defaults_fingerprints(get_host())
    recorded = json.loads(RECORDED.read_text())
    assert {"protocol:random-generation", "metric:fid", "metric:kid"} <= set(current)
    assert tasks.unbumped_changes(current, recorded) == []


def test_a_changed_default_without_a_bump_is_caught() -> None:
    from harness_plugins.protocols.paper import RandomGeneration, RandomGenerationConfig

    recorded = tasks.recorded_table({"protocol:random-generation":
                                     tasks.defaults_fingerprint(RandomGeneration)})

    @dataclasses.dataclass
    class MoreSamples(RandomGenerationConfig):
        n_samples: int = 10000

    class Changed(RandomGeneration):
        Config = MoreSamples

    problems = tasks.unbumped_changes(
        {"protocol:random-generation": tasks.defaults_fingerprint(Changed)}, recorded)
    assert len(problems) == 1 and "bump" in problems[0] and "10000" in problems[0], problems

    class Bumped(Changed):
        version = 2

    problems = tasks.unbumped_changes(
        {"protocol:random-generation": tasks.defaults_fingerprint(Bumped)}, recorded)
    assert len(problems) == 1 and "version 1 -> 2" in problems[0] and "record" in problems[0]

    class OnlyBatch(RandomGeneration):  # a speed-only option moves no number
        @dataclasses.dataclass
        class Config(RandomGenerationConfig):
            batch_size: int = 7

    assert tasks.unbumped_changes(
        {"protocol:random-generation": tasks.defaults_fingerprint(OnlyBatch)}, recorded) == []

    class NewOption(RandomGeneration):  # added with the old behaviour as its default: no bump,
        @dataclasses.dataclass          # but it must be recorded
        class Config(RandomGenerationConfig):
            temperature: float = 1.0

    (problem,) = tasks.unbumped_changes(
        {"protocol:random-generation": tasks.defaults_fingerprint(NewOption)}, recorded)
    assert "record them" in problem and "bump" not in problem, problem

    class Removed(RandomGeneration):  # a recorded option gone: its number may move
        @dataclasses.dataclass
        class Config:
            n_samples: int = 1250

    (problem,) = tasks.unbumped_changes(
        {"protocol:random-generation": tasks.defaults_fingerprint(Removed)}, recorded)
    assert "bump" in problem, problem


def _changed_pins(a: dict, b: dict, data_a: dict | None = None, data_b: dict | None = None):
    pa, pb = tasks.pins(a, data_a), tasks.pins(b, data_b)
    return sorted(k for k in pa if pa[k] != pb[k])


def test_pins_name_what_differs() -> None:
    assert _changed_pins(FID_STAMP, {**FID_STAMP, "seed": 3}) == []
    assert _changed_pins(FID_STAMP, {**FID_STAMP, "feature_weights_sha256": "ab"}) == \
        ["extractor weights"]
    assert _changed_pins(FID_STAMP, {**FID_STAMP, "n_samples": 10000, "n_images": 10000}) == \
        ["sample counts"]
    assert _changed_pins(FID_STAMP, {**FID_STAMP, "reference_dataset": {"n": 1}}) == \
        ["reference statistics"]
    assert _changed_pins(FID_STAMP, {**FID_STAMP, "metric_version": 3}) == ["definition"]
    # the data section decides the splits; where the files are does not
    assert _changed_pins(FID_STAMP, FID_STAMP, {"n_train": 100, "root": "/a"},
                         {"n_train": 100, "root": "/b"}) == []
    assert _changed_pins(FID_STAMP, FID_STAMP, {"n_train": 100}, {"n_train": 50}) == \
        ["dataset split"]


def test_task_id_and_version() -> None:
    a = tasks.describe_task("fashion-mnist", "random-generation", "fid", FID_STAMP)
    b = tasks.describe_task("fashion-mnist", "random-generation", "fid", {**FID_STAMP, "seed": 9})
    c = tasks.describe_task("fashion-mnist", "random-generation", "fid",
                            {**FID_STAMP, "n_samples": 64})
    assert a["id"] == b["id"] and a["id"] != c["id"]
    assert a["version"] == "p1.m2" and a["name"] == "fashion-mnist/random-generation/fid"
    assert tasks.task_version({"protocol_version": 1}) == "p1"
    assert "seed" not in a["stamp"]
