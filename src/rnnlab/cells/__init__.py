"""Recurrent cells and encoders: the from-scratch vanilla RNN, GRU and LSTM, and one encoder interface.

- ``recurrent``: the cells (``VanillaRNN``, ``GRU``, ``LSTM``), torch.nn-compatible; the cell kinds are
  declared once, by their registration (``CELL_CLASSES``; ``CELLS`` reads it at every use);
- ``scans``: their recurrences, autograd Functions with hand-written backward passes;
- ``stack``: ``RNNStack``, layers and directions of cells as torch.nn.RNN/GRU/LSTM;
- ``fused``: the LSTM's C++ CPU time loops, compiled on first use;
- ``encoders``: the ``model.impl`` registry (``builtin`` torch.nn / ``custom`` from scratch);
- ``interop``: weights to and from torch.nn (``to_torch``, ``load_from_torch``, ``copy_to_torch``).

May import ``errors``, ``registry`` and ``console`` only.
"""

from rnnlab.cells.encoders import ENCODERS, build_encoder, set_forget_bias, top_layer_state
from rnnlab.cells.interop import copy_to_torch, load_from_torch, to_torch, torch_parameter_pairs
from rnnlab.cells.recurrent import CELL_CLASSES, CELLS, GRU, LSTM, RecurrentCell, VanillaRNN
from rnnlab.cells.stack import RNNStack

__all__ = [
    "CELLS",
    "CELL_CLASSES",
    "ENCODERS",
    "GRU",
    "LSTM",
    "RNNStack",
    "RecurrentCell",
    "VanillaRNN",
    "build_encoder",
    "copy_to_torch",
    "load_from_torch",
    "set_forget_bias",
    "to_torch",
    "top_layer_state",
    "torch_parameter_pairs",
]
