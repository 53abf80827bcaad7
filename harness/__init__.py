"""vrrae-harness: a pluggy-based benchmarking harness for generative autoencoders.

The public API for plugin authors is :data:`hookimpl` plus the contracts in
:mod:`harness.api`. Importing this package does not import torch.
"""

from harness.api import (
    DataConfig,
    DatasetInfo,
    DataSplits,
    GenerativeModel,
    Metric,
    StepContext,
    ValueDisplay,
)
from harness.errors import ConfigError, HarnessError
from harness.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataConfig",
    "DataSplits",
    "DatasetInfo",
    "GenerativeModel",
    "HarnessError",
    "Metric",
    "StepContext",
    "ValueDisplay",
    "__version__",
    "hookimpl",
]
