"""Weights between the from-scratch ``RNNStack`` and its torch.nn counterpart (RNN/GRU/LSTM).

The custom parameters are stored input-major, the transpose of torch.nn's layout; these helpers pair
them up, copy them across and build the counterpart.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from rnnlab.cells.encoders import build_encoder
from rnnlab.cells.recurrent import CELL_CLASSES
from rnnlab.cells.stack import RNNStack

_TORCH_NAMES = (("weight_xh", "weight_ih"), ("weight_hh", "weight_hh"), ("bias_xh", "bias_ih"), ("bias_hh", "bias_hh"))


def torch_parameter_pairs(stack: RNNStack, module: nn.RNNBase) -> Iterator[tuple[nn.Parameter, nn.Parameter]]:
    """(custom parameter, torch.nn parameter) pairs; the 2-d ones are each other's transpose.

    Raises ValueError when ``module`` is not the torch.nn counterpart of ``stack`` (kind, sizes, layers,
    directions; it must have biases and no projection).
    """
    if not isinstance(module, nn.RNNBase):
        raise ValueError(f"expected a torch.nn.RNN, GRU or LSTM, got {type(module).__name__}")
    cls = CELL_CLASSES.get(stack.cell)
    got = (
        module.mode,
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bidirectional,
        module.bias,
        module.proj_size,
    )
    want = (cls.torch_mode, stack.input_size, stack.hidden_size, stack.num_layers, stack.bidirectional, True, 0)
    if got != want:
        raise ValueError(f"{module} is not the torch.nn counterpart of {stack}")
    for index, cell in enumerate(stack.cells):
        layer, direction = divmod(index, stack.num_directions)
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        for ours, theirs in _TORCH_NAMES:
            yield getattr(cell, ours), getattr(module, theirs + suffix)


@torch.no_grad()
def load_from_torch(stack: RNNStack, module: nn.RNNBase) -> RNNStack:
    """Copy the weights of torch.nn.RNN/GRU/LSTM ``module`` into ``stack`` (transposed); returns ``stack``."""
    for ours, theirs in torch_parameter_pairs(stack, module):
        ours.copy_(theirs.t())
    return stack


@torch.no_grad()
def copy_to_torch(stack: RNNStack, module: nn.RNNBase) -> nn.RNNBase:
    """Copy the weights of ``stack`` into its torch.nn counterpart ``module`` (transposed); returns ``module``."""
    for ours, theirs in torch_parameter_pairs(stack, module):
        theirs.copy_(ours.t())
    return module


def to_torch(stack: RNNStack) -> nn.RNNBase:
    """A new batch-first torch.nn.RNN/GRU/LSTM equal to ``stack``: weights, dtype, device and mode."""
    options = ("input_size", "hidden_size", "num_layers", "dropout", "bidirectional")
    module = build_encoder("builtin", stack.cell, **{name: getattr(stack, name) for name in options})
    weight = stack.cells[0].weight_hh
    module.to(device=weight.device, dtype=weight.dtype).train(stack.training)
    return copy_to_torch(stack, module)
