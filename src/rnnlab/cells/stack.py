"""``RNNStack``: layers and directions of from-scratch cells with the conventions of torch.nn.RNN/GRU/LSTM
(``batch_first=True``); ``rnnlab.cells.interop`` converts weights between the two."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.cells.recurrent import CELL_CLASSES, State, as_tuple, from_tuple


class RNNStack(nn.Module):
    """Layers (and directions) of from-scratch cells with torch.nn.RNN/GRU/LSTM(batch_first=True) semantics.

    ``cell`` is ``vanilla`` | ``gru`` | ``lstm``. ``forward(x, state=None) -> (out, state)`` with x (N, T, D)
    (or unbatched (T, D)), out (N, T, dirs·H) and state h_n (L·dirs, N, H), or (h_n, c_n) for an LSTM, in
    torch.nn's order (index layer·dirs + direction). The reverse direction reads the time-reversed
    sequence; its outputs are concatenated after the forward ones. Dropout acts on the outputs of every
    layer but the last, in training mode only. ``cells[layer·dirs + direction]`` holds the cells.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ):
        super().__init__()
        cls = CELL_CLASSES.get(cell)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            cls(input_size if layer == 0 else self.num_directions * hidden_size, hidden_size)
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )

    def extra_repr(self) -> str:
        return (
            f"{self.cell!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"dropout={self.dropout}, bidirectional={self.bidirectional}"
        )

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if x.dim() == 2:  # unbatched (T, D), state (L·dirs, H)
            out, state = self.forward(x.unsqueeze(0), None if state is None else _unsqueeze_batch(state))
            return out.squeeze(0), _squeeze_batch(state)
        states = None if state is None else self._check_state(as_tuple(state), x.shape[0])
        x = x.transpose(0, 1)  # the layers run time-major
        finals: list[tuple[Tensor, ...]] = []
        for layer in range(self.num_layers):
            if layer:
                x = F.dropout(x, self.dropout, self.training)
            outs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                given = None if states is None else tuple(s[index] for s in states)
                out, final = self.cells[index].scan(x.flip(0) if direction else x, from_tuple(given))
                outs.append(out.flip(0) if direction else out)
                finals.append(as_tuple(final))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        stacked = tuple(torch.stack(parts) for parts in zip(*finals))
        return x.transpose(0, 1).contiguous(), from_tuple(stacked)

    def _check_state(self, states: tuple[Tensor, ...], n_batch: int) -> tuple[Tensor, ...]:
        expected = (self.num_layers * self.num_directions, n_batch, self.hidden_size)
        for s in states:
            if tuple(s.shape) != expected:
                raise ValueError(f"expected a state of shape {expected}, got {tuple(s.shape)}")
        return states


def _unsqueeze_batch(state: State) -> State:
    return from_tuple(tuple(s.unsqueeze(1) for s in as_tuple(state)))


def _squeeze_batch(state: State) -> State:
    return from_tuple(tuple(s.squeeze(1) for s in as_tuple(state)))
