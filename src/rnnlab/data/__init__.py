"""Tasks and their data: the contract with the model (``TaskSpec``), tensor loaders, the datamodules.

- ``task``: ``TaskSpec`` (what a dataset asks of a model) and the token ``ENCODINGS``;
- ``loaders``: whole-batch tensor datasets, epoch-seeded shuffling, ``TensorDataModule``;
- ``mnist1d``, ``synthetic`` (adding problems, sine mixtures), ``text`` (char/word language modelling);
- ``augment``: MNIST-1D's training-time augmentation.

May import ``errors`` and ``registry``; never ``models`` or above (the model adapts to the task, not back).
"""

from rnnlab.data.augment import SeriesAugment
from rnnlab.data.loaders import EpochSeededBatchSampler, TensorDataModule, TensorPairs, tensor_loader
from rnnlab.data.mnist1d import MNIST1DDataModule, mnist1d_arrays
from rnnlab.data.synthetic import AddingDataModule, DynamicAddingDataModule, GeneratedDataModule, SineDataModule
from rnnlab.data.task import ENCODINGS, TaskSpec
from rnnlab.data.text import TextDataModule, Vocabulary

__all__ = [
    "ENCODINGS",
    "AddingDataModule",
    "DynamicAddingDataModule",
    "EpochSeededBatchSampler",
    "GeneratedDataModule",
    "MNIST1DDataModule",
    "SeriesAugment",
    "SineDataModule",
    "TaskSpec",
    "TensorDataModule",
    "TensorPairs",
    "TextDataModule",
    "Vocabulary",
    "mnist1d_arrays",
    "tensor_loader",
]
