"""From-scratch recurrent cells (vanilla RNN, GRU, LSTM), registered by name in ``CELL_CLASSES``.

Cells use the course's parameterisation: weights stored input-major (the transpose of torch.nn's
layout), gates concatenated along the second dimension, G gates of size H each::

    weight_xh (D, G·H)   weight_hh (H, G·H)   bias_xh (G·H,)   bias_hh (G·H,)

with G = 1 (vanilla), 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); every parameter is drawn
uniformly from ±1/√H in that order. A cell runs a whole batch-first sequence::

    out, h = cell(x)                  # x (N, T, D) -> out (N, T, H), h (N, H)
    out, h = cell(x, h0)              # h0 (N, H)
    out, (h, c) = lstm(x, (h0, c0))   # LSTM state is a pair

``rnnlab.cells.stack.RNNStack`` stacks them as torch.nn.RNN/GRU/LSTM do; ``rnnlab.cells.interop``
converts weights between the two. Each cell's recurrence is an autograd Function over the whole sequence
with a hand-written backward (``rnnlab.cells.scans``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, TypeAlias

import torch
from torch import Tensor, nn

from rnnlab.cells.scans import GRUScan, LSTMScan, VanillaScan, autocasts
from rnnlab.registry import Registry

State: TypeAlias = Tensor | tuple[Tensor, Tensor]  # h, or (h, c) for an LSTM

CELL_CLASSES: Registry[type[RecurrentCell]] = Registry("model.cell")


class RecurrentCell(nn.Module):
    """A from-scratch recurrent cell with ``num_gates`` gates, run over a whole sequence.

    Subclasses set the gate count, which gates go through tanh, the recurrence (an autograd Function)
    and whether b_hh must stay inside it (GRU) or can join the input projection; a cell that torch.nn also
    has sets its twin (``torch_class``, ``torch_mode``) for ``model.impl=builtin`` and the weight conversion.
    """

    num_gates: int = 1
    tanh_gates: tuple[int, ...] = ()
    recurrence: type[torch.autograd.Function]
    state_size: int = 1  # tensors in the state: h, or (h, c)
    bias_hh_in_recurrence: bool = False
    torch_mode: str = ""  # the matching torch.nn.RNNBase.mode
    torch_class: ClassVar[type[nn.RNNBase] | None] = None  # the torch.nn twin; None: model.impl=custom only

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        width = self.num_gates * hidden_size
        self.weight_xh = nn.Parameter(torch.empty(input_size, width))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, width))
        self.bias_xh = nn.Parameter(torch.empty(width))
        self.bias_hh = nn.Parameter(torch.empty(width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform ±1/√H, drawn in the order weight_xh, weight_hh, bias_xh, bias_hh."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_xh, self.weight_hh, self.bias_xh, self.bias_hh):
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (N, T, D), state (N, H) or an LSTM's (h0, c0), zeros if None -> (out (N, T, H), final state)."""
        if x.dim() != 3:
            raise ValueError(f"expected x of shape (N, T, {self.input_size}), got {tuple(x.shape)}")
        out, final = self.scan(x.transpose(0, 1), state)
        return out.transpose(0, 1).contiguous(), final

    def scan(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Time-major ``forward``: x (T, N, D) -> (out (T, N, H), final state)."""
        if x.dim() != 3 or x.shape[-1] != self.input_size or x.shape[0] == 0:
            raise ValueError(f"expected x of shape (T>0, N, {self.input_size}), got {tuple(x.shape)}")
        given = (None,) * self.state_size if state is None else as_tuple(state)
        if len(given) != self.state_size:
            raise ValueError(f"{type(self).__name__} expects a state of {self.state_size} tensor(s), got {len(given)}")
        initial = tuple(self._initial(x, s) for s in given)
        scale = self.gate_scale()
        bias_x, bias_h = self.bias_xh * scale, self.bias_hh * scale
        if not self.bias_hh_in_recurrence:
            bias_x, bias_h = bias_x + bias_h, None
        out, *last = self._recur(x, self.weight_xh * scale, bias_x, self.weight_hh * scale, bias_h, *initial)
        return out, from_tuple((out[-1], *last))

    def gate_scale(self) -> Tensor:
        """(G·H,): 2 for the columns of tanh gates, else 1 (see ``rnnlab.cells.scans._tanh_from_sigmoid``)."""
        scale = self.weight_hh.new_ones(self.num_gates, self.hidden_size)
        scale[list(self.tanh_gates)] = 2
        return scale.view(-1)

    def _initial(self, x: Tensor, h0: Tensor | None) -> Tensor:
        """The given state, checked, or zeros of the input's dtype and device: (N, H)."""
        shape = (x.shape[1], self.hidden_size)
        if h0 is None:
            return x.new_zeros(shape)
        if tuple(h0.shape) != shape:
            raise ValueError(f"expected an initial state of shape {shape}, got {tuple(h0.shape)}")
        return h0

    def _recur(self, x: Tensor, *args: Tensor | None) -> tuple[Tensor, ...]:
        """Run the recurrence, in autocast's dtype when autocast is on (as the built-in RNNs do)."""
        device_type = x.device.type
        if autocasts(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            x = x.to(dtype)
            args = tuple(None if a is None else a.to(dtype) for a in args)
        return self.recurrence.apply(x, *args)


@CELL_CLASSES.register("vanilla")
class VanillaRNN(RecurrentCell):
    """Elman RNN: h_t = tanh(x_t @ W_xh + b_xh + h_{t-1} @ W_hh + b_hh).

    forward(x (N, T, D), h0 (N, H) | None) -> (out (N, T, H), h_T (N, H)).
    """

    num_gates = 1
    tanh_gates = (0,)
    recurrence = VanillaScan
    torch_mode = "RNN_TANH"
    torch_class = nn.RNN


@CELL_CLASSES.register("gru")
class GRU(RecurrentCell):
    """GRU as torch.nn.GRU (reset gate applied after the hidden product), gates r, z, n::

        r = σ(x W_xr + b_xr + h W_hr + b_hr),  z = σ(x W_xz + b_xz + h W_hz + b_hz)
        n = tanh(x W_xn + b_xn + r ⊙ (h W_hn + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    forward(x (N, T, D), h0 (N, H) | None) -> (out (N, T, H), h_T (N, H)).
    """

    num_gates = 3
    tanh_gates = (2,)
    recurrence = GRUScan
    bias_hh_in_recurrence = True
    torch_mode = "GRU"
    torch_class = nn.GRU


@CELL_CLASSES.register("lstm")
class LSTM(RecurrentCell):
    """LSTM, gates i, f, g, o from x W_xh + b_xh + h W_hh + b_hh::

        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),  h_t = σ(o) ⊙ tanh(c_t)

    forward(x (N, T, D), (h0, c0) each (N, H) | None) -> (out (N, T, H), (h_T, c_T) each (N, H)).
    """

    num_gates = 4
    tanh_gates = (2,)
    recurrence = LSTMScan
    state_size = 2
    torch_mode = "LSTM"
    torch_class = nn.LSTM


def as_tuple(state: State) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def from_tuple(parts: tuple[Tensor, ...] | None) -> State | None:
    """A cell's or stack's state: one tensor, or the (h, c) pair of an LSTM."""
    return parts if parts is None or len(parts) > 1 else parts[0]


class CellKinds(Sequence[str]):
    """The registered cell kinds in registration order, read from ``CELL_CLASSES`` at every use: a cell
    registered after this module is imported is a kind like the others (validation, reports)."""

    def __getitem__(self, index):
        return tuple(CELL_CLASSES)[index]

    def __len__(self) -> int:
        return len(tuple(CELL_CLASSES))

    def __repr__(self) -> str:
        return f"CellKinds{tuple(CELL_CLASSES)}"


# The cell kinds, in the order reports and tables show them; declared by the registrations (live).
CELLS: Sequence[str] = CellKinds()
