"""Recurrent encoders: one call convention for every cell kind and implementation.

Every encoder follows torch.nn.RNN/GRU/LSTM with ``batch_first=True``::

    out, state = encoder(x)            # x (N, T, D) -> out (N, T, dirs·H)
    out, state = encoder(x, state0)

``state`` is ``h_n`` of shape (L·dirs, N, H), or ``(h_n, c_n)`` for an LSTM, with torch.nn's layer and
direction order. Implementations register a builder under a name (``builtin``, ``custom``) so the model
config chooses one with ``model.impl=<name>``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rnnlab.cells.recurrent import CELL_CLASSES
from rnnlab.cells.stack import RNNStack
from rnnlab.errors import ConfigError
from rnnlab.registry import Registry

EncoderBuilder = Callable[..., nn.Module]
ENCODERS: Registry[EncoderBuilder] = Registry("model.impl")


@ENCODERS.register("builtin")
def builtin_encoder(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
) -> nn.Module:
    """torch.nn.RNN (tanh) / GRU / LSTM, batch-first; cuDNN kernels on a GPU."""
    cls = CELL_CLASSES.get(cell).torch_class
    if cls is None:
        others = [name for name in ENCODERS.names() if name != "builtin"]
        raise ConfigError(
            f"model.impl='builtin' is not allowed for model.cell={cell!r} (torch.nn has no such cell); "
            f"allowed: {', '.join(others)}"
        )
    return cls(
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,  # torch warns on dropout with a single layer
        bidirectional=bidirectional,
        batch_first=True,
    )


def build_encoder(impl: str, cell: str, **kwargs) -> nn.Module:
    """Build the encoder ``impl`` (``builtin`` | ``custom``) for ``cell`` (``vanilla`` | ``gru`` | ``lstm``)."""
    CELL_CLASSES.get(cell)  # a one-line error naming the allowed cells
    return ENCODERS.get(impl)(cell, **kwargs)


def set_forget_bias(encoder: nn.Module, value: float) -> None:
    """Start an LSTM's forget gates open: in every layer and direction, the forget gate's input bias becomes
    ``value`` and its recurrent bias 0, so their sum is ``value`` (1 is the usual choice; with the default
    init the gate starts near σ(0) = 0.5 and the cell forgets half its state per step).

    Works on both implementations: torch.nn.LSTM's ``bias_ih_l*`` / ``bias_hh_l*`` and the custom cells'
    ``bias_xh`` / ``bias_hh`` all hold the gates in the order i, f, g, o.
    """
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith(("bias_ih", "bias_xh")):
                param.view(4, -1)[1].fill_(value)
            elif leaf.startswith("bias_hh"):
                param.view(4, -1)[1].zero_()


def top_layer_state(state: torch.Tensor | tuple[torch.Tensor, torch.Tensor], bidirectional: bool) -> torch.Tensor:
    """Final hidden state of the top layer, both directions concatenated: (L·dirs, N, H) -> (N, dirs·H)."""
    h_n = state[0] if isinstance(state, tuple) else state
    dirs = 2 if bidirectional else 1
    return torch.cat(list(h_n[-dirs:]), dim=-1)


@ENCODERS.register("custom")
def custom_encoder(cell: str, input_size: int, hidden_size: int, **options) -> nn.Module:
    """The from-scratch cells of rnnlab.cells in a torch.nn-compatible ``RNNStack``; options as for ``builtin``."""
    return RNNStack(cell, input_size, hidden_size, **options)
