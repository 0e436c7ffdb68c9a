"""The layers around the recurrent encoder: token input layers (one-hot, embedding) and readouts over time."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.cells import top_layer_state
from rnnlab.data.task import ENCODINGS, TaskSpec
from rnnlab.errors import first_line
from rnnlab.registry import Registry


class Readout(nn.Module):
    """Turns encoder outputs (N, T, dirs·H) and final state into features (N, F) for the head."""

    def __init__(self, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional

    @staticmethod
    def num_features(dirs_hidden: int, seq_len: int) -> int:
        return dirs_hidden


READOUTS: Registry[type[Readout]] = Registry("model.readout")


@READOUTS.register("last")
class LastState(Readout):
    """The top layer's final hidden state; for a bidirectional encoder, both directions' final states."""

    def forward(self, out: torch.Tensor, state) -> torch.Tensor:
        return top_layer_state(state, self.bidirectional)


@READOUTS.register("mean")
class MeanOverTime(Readout):
    """The encoder outputs averaged over time."""

    def forward(self, out: torch.Tensor, state) -> torch.Tensor:
        return out.mean(dim=1)


@READOUTS.register("flatten")
class FlattenTime(Readout):
    """All time steps' outputs concatenated (the course lab's head): (N, T·dirs·H)."""

    @staticmethod
    def num_features(dirs_hidden: int, seq_len: int) -> int:
        return seq_len * dirs_hidden

    def forward(self, out: torch.Tensor, state) -> torch.Tensor:
        return out.flatten(start_dim=1)


class OneHot(nn.Module):
    """Token indices (N, T) -> one-hot vectors (N, T, V) in the model's dtype, on the input's device."""

    def __init__(self, num_tokens: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.register_buffer("dtype_anchor", torch.empty(0), persistent=False)  # follows .double(), .to()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens, self.num_tokens).to(self.dtype_anchor.dtype)


INPUT_LAYERS: Registry[Callable[[TaskSpec], tuple[nn.Module, int]]] = Registry("data.encoding")


@INPUT_LAYERS.register("onehot")
def _onehot(task: TaskSpec) -> tuple[nn.Module, int]:
    return OneHot(task.input_size), task.input_size


@INPUT_LAYERS.register("embedding")
def _embedding(task: TaskSpec) -> tuple[nn.Module, int]:
    if task.embedding_dim is None:  # a TaskSpec made by hand; the text datamodule always sets it
        raise ValueError(f"task encoding='embedding' needs an embedding_dim; got {task}")
    return nn.Embedding(task.input_size, task.embedding_dim), task.embedding_dim


# One layer for every encoding the data side declares.
assert set(INPUT_LAYERS) == set(ENCODINGS), (sorted(INPUT_LAYERS), ENCODINGS)


def build_input_layer(task: TaskSpec) -> tuple[nn.Module, int]:
    """The layer in front of the encoder (token encodings; nothing for real-valued inputs) and its size D."""
    if task.encoding is None:
        return nn.Identity(), task.input_size
    return INPUT_LAYERS.get(task.encoding)(task)


class CompiledOrEager:
    """``fn`` compiled with ``torch.compile``; where compiling fails (torch.compile unsupported here, or the
    compiler raising on a call) it warns once and runs ``fn`` itself from then on.

    An error of the computation itself is not hidden: the eager call raises it again.
    """

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name
        self.compiled: Callable | None = None
        try:
            self.compiled = torch.compile(fn)
        except Exception as error:  # e.g. a Python or platform torch.compile does not support
            self._fall_back(error)

    def _fall_back(self, error: Exception) -> None:
        warnings.warn(
            f"model.compile=true: torch.compile failed for {self.name} ({first_line(error)}); running it uncompiled",
            RuntimeWarning,
            stacklevel=3,
        )
        self.compiled = None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as error:
                self._fall_back(error)
        return self.fn(*args)
