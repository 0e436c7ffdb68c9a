"""From-scratch recurrent cells (vanilla RNN, GRU, LSTM) and a torch.nn-compatible stack of them.

Cells use the course's parameterisation: weights stored input-major (the transpose of torch.nn's
layout), gates concatenated along the second dimension, G gates of size H each::

    weight_xh (D, G·H)   weight_hh (H, G·H)   bias_xh (G·H,)   bias_hh (G·H,)

with G = 1 (vanilla), 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); every parameter is drawn
uniformly from ±1/√H in that order. A cell runs a whole batch-first sequence::

    out, h = cell(x)                  # x (N, T, D) -> out (N, T, H), h (N, H)
    out, h = cell(x, h0)              # h0 (N, H)
    out, (h, c) = lstm(x, (h0, c0))   # LSTM state is a pair

``RNNStack`` stacks cells with exactly the conventions of torch.nn.RNN/GRU/LSTM(batch_first=True);
``rnnlab.cells.interop`` converts weights between the two.

Speed: each recurrence is a ``torch.autograd.Function`` over the whole sequence. Its forward computes
the input projection ``x @ W_xh + b`` for all steps in one matrix product, adds ``h @ W_hh`` into it
step by step in place and runs the gate arithmetic on preallocated buffers without recording a
graph; its backward is hand-written back-propagation through time: per step one matrix product and
a few element-wise kernels, the derivative factors and the weight gradients for all steps at once.
tanh is computed as 2σ(2a) − 1 (torch's CPU sigmoid kernel is several times faster than its tanh).
On the CPU in float32/float64 the LSTM's time loops run in C++ (``rnnlab.cells.fused``: the gate arithmetic
of a step in one loop, each thread taking a block of batch rows through the whole sequence), compiled
on first use; elsewhere, or with ``RNNLAB_FUSED=0``, the same recurrence runs eagerly.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnlab.cells import fused
from rnnlab.registry import Registry

State = Tensor | tuple[Tensor, Tensor]

CELL_CLASSES: Registry[type[RecurrentCell]] = Registry("model.cell")


def _autocasts(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


@contextmanager
def _autocast_off(t: Tensor):
    """The recurrences write into buffers of their inputs' dtype: keep autocast from changing it."""
    if _autocasts(t.device.type):
        with torch.autocast(t.device.type, enabled=False):
            yield
    else:
        yield


def _tanh_from_sigmoid(s: Tensor, minus_one: Tensor) -> Tensor:
    """Turn s = σ(2a) into tanh(a) = 2σ(2a) − 1, in place.

    The recurrences compute tanh this way because torch's CPU sigmoid kernel is several times faster
    than its tanh kernel; the two agree to rounding (the absolute error is a few ulp of 1). The
    pre-activations are doubled up front (``RecurrentCell.gate_scale``), so this costs one fused op.
    """
    return torch.add(minus_one, s, alpha=2, out=s)


def _flat(x: Tensor) -> Tensor:
    """(T, N, D) -> (T·N, D)."""
    return x.reshape(-1, x.shape[-1])


def _summed_products(parts: list[Tensor], d_pre: Tensor) -> list[Tensor]:
    """Σ_t p_tᵀ @ d_pre_t for each of parts (T·N, K_p), then Σ_t d_pre_t: in one matrix product.

    These are the gradients of the weights that multiply ``parts`` to give a pre-activation, whose
    gradient is d_pre (T, N, M), and of the bias added to it.
    """
    ones = parts[0].new_ones(parts[0].shape[0], 1)
    grads = torch.cat([*parts, ones], dim=1).t() @ _flat(d_pre)
    *weights, bias = grads.split([p.shape[1] for p in parts] + [1])
    return [*weights, bias.squeeze(0)]


def _input_grad(ctx, w_xh: Tensor, d_xg: Tensor) -> Tensor | None:
    """The gradient of x (T, N, D), if wanted, given d_xg, that of xg = x @ w_xh + b_x."""
    return (_flat(d_xg) @ w_xh.t()).view(*d_xg.shape[:2], -1) if ctx.needs_input_grad[0] else None


def _shared_grads(ctx, x_flat: Tensor, w_xh: Tensor, hs: Tensor, d_pre: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients of x, w_xh, b_x and w_hh when d_pre is the gradient of x @ w_xh + b_x + h_{t-1} @ w_hh."""
    d_w_hh, d_w_xh, d_b_x = _summed_products([_flat(hs[:-1]), x_flat], d_pre)
    return _input_grad(ctx, w_xh, d_pre), d_w_xh, d_b_x, d_w_hh


def _states(h0: Tensor, steps: int) -> Tensor:
    """A (T+1, N, H) buffer holding the initial state h0 (N, H) at index 0; step t writes index t+1."""
    hs = h0.new_empty(steps + 1, *h0.shape)
    hs[0] = h0
    return hs


def _grad_buffer(d_out: Tensor) -> Tensor:
    """A fresh contiguous copy of the output gradient, to which each step adds what flows back to h_t."""
    return d_out.clone(memory_format=torch.contiguous_format)


# The recurrences below are autograd Functions over time-major sequences, all called as
#   (x (T, N, D), w_xh, b_x, w_hh, b_h, h0[, c0]) -> (out (T, N, H)[, c_T])
# with the columns of tanh gates of the weights and biases doubled (see ``_tanh_from_sigmoid``) and
# b_x = b_xh + b_hh, b_h = None, except for the GRU (b_x = b_xh, b_h = b_hh). The forward computes
# xg = x @ w_xh + b_x for all steps in one product, into a buffer that each step adds h_{t-1} @ w_hh to
# in place, without recording a graph. The backward is hand-written BPTT: per step one matrix product
# and a few element-wise ops; the derivative factors and the weight gradients for all steps at once.


class _VanillaScan(torch.autograd.Function):
    """h_t = tanh(x_t @ w_xh + b_x + h_{t-1} @ w_hh)."""

    @staticmethod
    def forward(ctx, x: Tensor, w_xh: Tensor, b_x: Tensor, w_hh: Tensor, b_h: None, h0: Tensor) -> tuple[Tensor]:
        with _autocast_off(x):
            x_flat = _flat(x)
            hs = _states(h0, x.shape[0])
            torch.addmm(b_x, x_flat, w_xh, out=_flat(hs[1:]))
            minus_one = x.new_full((), -1.0)
            h_all = hs.unbind(0)
            for t in range(x.shape[0]):
                _tanh_from_sigmoid(h_all[t + 1].addmm_(h_all[t], w_hh).sigmoid_(), minus_one)
        ctx.save_for_backward(x_flat, w_xh, w_hh, hs)
        return (hs[1:],)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor):
        x_flat, w_xh, w_hh, hs = ctx.saved_tensors
        with _autocast_off(hs):
            out = hs[1:]
            d_pre = torch.addcmul(out.new_full((), 0.5), out, out, value=-0.5)  # d tanh(a) / d(2a), then its gradient
            d_pre_all, dh_all = d_pre.unbind(0), _grad_buffer(d_out).unbind(0)
            w_t = w_hh.t()
            for t in range(out.shape[0] - 1, 0, -1):
                dh_all[t - 1].addmm_(d_pre_all[t].mul_(dh_all[t]), w_t)
            dh0 = d_pre_all[0].mul_(dh_all[0]) @ w_t
            return (*_shared_grads(ctx, x_flat, w_xh, hs, d_pre), None, dh0)


class _GRUScan(torch.autograd.Function):
    """The GRU recurrence; b_hh stays inside r ⊙ (h W_hn + b_hn), so it is applied at every step."""

    @staticmethod
    def forward(ctx, x: Tensor, w_xh: Tensor, b_x: Tensor, w_hh: Tensor, b_h: Tensor, h0: Tensor) -> tuple[Tensor]:
        steps, hidden = x.shape[0], h0.shape[-1]
        with _autocast_off(x):
            x_flat = _flat(x)
            hs = _states(h0, steps)
            # xg, turned in place into σ(r), σ(z), n step by step
            act = torch.addmm(b_x, x_flat, w_xh).view(steps, -1, 3 * hidden)
            hg = torch.empty_like(act)  # h_{t-1} @ w_hh + b_h
            minus_one = x.new_full((), -1.0)
            h_all, act_all, hg_all = hs.unbind(0), act.unbind(0), hg.unbind(0)
            for t in range(steps):
                h = h_all[t]
                hg_rz, hg_n = torch.addmm(b_h, h, w_hh, out=hg_all[t]).split(2 * hidden, 1)
                rz, n = act_all[t].split(2 * hidden, 1)
                r, z = rz.add_(hg_rz).sigmoid_().chunk(2, 1)
                _tanh_from_sigmoid(n.addcmul_(r, hg_n).sigmoid_(), minus_one)
                torch.addcmul(n, z, h - n, out=h_all[t + 1])
        ctx.save_for_backward(x_flat, w_xh, w_hh, hs, act, hg)
        return (hs[1:],)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor):
        x_flat, w_xh, w_hh, hs, act, hg = ctx.saved_tensors
        steps, n_batch, hidden = d_out.shape
        with _autocast_off(hs):
            r, z, n = act.chunk(3, -1)
            # Per unit of dh_t: the gradients of the pre-activations of r, z and n (doubled), as of hg.
            d_hg = torch.empty_like(hg)
            d_r, d_z, d_hg_n = d_hg.chunk(3, -1)
            d_n = torch.addcmul(n.new_full((), 0.5), n, n, value=-0.5).mul_(1 - z)
            torch.addcmul(r, r, r, value=-1, out=d_r).mul_(hg[..., 2 * hidden :]).mul_(d_n)
            torch.addcmul(z, z, z, value=-1, out=d_z).mul_(hs[:-1] - n)
            torch.mul(d_n, r, out=d_hg_n)
            dh_all, d_hg_all = _grad_buffer(d_out).unbind(0), d_hg.view(steps, n_batch, 3, hidden).unbind(0)
            d_n_all, z_all = d_n.unbind(0), z.unbind(0)
            w_t = w_hh.t()
            for t in range(steps - 1, -1, -1):
                dh = dh_all[t]
                d_hg_all[t].mul_(dh.unsqueeze(1))
                d_n_all[t].mul_(dh)
                if t:
                    dh_all[t - 1].addcmul_(dh, z_all[t]).addmm_(d_hg[t], w_t)
            dh0 = torch.addcmul(d_hg[0] @ w_t, dh_all[0], z_all[0])
            d_w_hh, d_b_h = _summed_products([_flat(hs[:-1])], d_hg)
            d_hg_n.copy_(d_n)  # d_hg becomes the gradient of xg: the same for r and z, without the factor r for n
            return (_input_grad(ctx, w_xh, d_hg), *_summed_products([x_flat], d_hg), d_w_hh, d_b_h, dh0)


class _LSTMScan(torch.autograd.Function):
    """The LSTM recurrence; also returns c_T."""

    @staticmethod
    def forward(
        ctx, x: Tensor, w_xh: Tensor, b_x: Tensor, w_hh: Tensor, b_h: None, h0: Tensor, c0: Tensor
    ) -> tuple[Tensor, Tensor]:
        steps, hidden = x.shape[0], h0.shape[-1]
        ctx.fused = fused.lstm_ops(x)  # the C++ time loop (rnnlab.cells.fused), or None: the eager one below
        with _autocast_off(x):
            x_flat = _flat(x)
            hs, cs = _states(h0, steps), _states(c0, steps)
            act = torch.addmm(b_x, x_flat, w_xh).view(steps, -1, 4 * hidden)  # xg, to become σ(i), σ(f), tanh(g), σ(o)
            tanh_c = torch.empty_like(hs[1:])
            if ctx.fused is not None:
                ctx.fused.lstm_forward(act, w_hh, hs, cs, tanh_c)
            else:
                minus_one = x.new_full((), -1.0)
                h_all, c_all, act_all, tanh_c_all = hs.unbind(0), cs.unbind(0), act.unbind(0), tanh_c.unbind(0)
                for t in range(steps):
                    i, f, g, o = act_all[t].addmm_(h_all[t], w_hh).sigmoid_().chunk(4, 1)
                    c = torch.mul(f, c_all[t], out=c_all[t + 1]).addcmul_(i, _tanh_from_sigmoid(g, minus_one))
                    tc = _tanh_from_sigmoid(torch.add(c, c, out=tanh_c_all[t]).sigmoid_(), minus_one)
                    torch.mul(o, tc, out=h_all[t + 1])
        ctx.save_for_backward(x_flat, w_xh, w_hh, hs, cs, act, tanh_c)
        return hs[1:], cs[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_cn: Tensor):
        x_flat, w_xh, w_hh, hs, cs, act, tanh_c = ctx.saved_tensors
        steps, n_batch, hidden = d_out.shape
        with _autocast_off(hs):
            if ctx.fused is not None:
                dc = d_cn.clone(memory_format=torch.contiguous_format)  # dc_T in, dc_0 out
                d_act, dh0 = torch.empty_like(act), torch.empty_like(dc)
                ctx.fused.lstm_backward(act, w_hh.t(), cs, tanh_c, d_out.contiguous(), dh0, dc, d_act)
                return (*_shared_grads(ctx, x_flat, w_xh, hs, d_act), None, dh0, dc)
            i, f, g, o = act.chunk(4, -1)
            c_from_h = torch.addcmul(o, hs[1:], tanh_c, value=-1)  # dc_t per unit of dh_t: σ(o)(1 − tanh²c)
            # Per unit of dc_t (i, f, g) and of dh_t (o), the gradients of the pre-activations: σ'(i) tanh(g),
            # σ'(f) c_{t-1}, σ(i) (1 − tanh²g) / 2 (g's is doubled) and σ'(o) tanh(c_t), where σ' = σ(1 − σ).
            d_act = torch.addcmul(act, act, act, value=-1)
            d_i, d_f, d_g, d_o = d_act.chunk(4, -1)
            d_i.mul_(g)
            d_f.mul_(cs[:-1])
            torch.addcmul(g.new_full((), 0.5), g, g, value=-0.5, out=d_g).mul_(i)
            d_o.mul_(tanh_c)
            dh_all, c_from_h_all, f_all = _grad_buffer(d_out).unbind(0), c_from_h.unbind(0), f.unbind(0)
            d_ifg_all, d_o_all = d_act.view(steps, n_batch, 4, hidden)[:, :, :3].unbind(0), d_o.unbind(0)
            w_t = w_hh.t()
            dc = d_cn
            for t in range(steps - 1, -1, -1):
                dh = dh_all[t]
                dc = torch.addcmul(dc, dh, c_from_h_all[t])
                d_ifg_all[t].mul_(dc.unsqueeze(1))
                d_o_all[t].mul_(dh)
                dc = dc * f_all[t]
                if t:
                    dh_all[t - 1].addmm_(d_act[t], w_t)
            dh0 = d_act[0] @ w_t
            return (*_shared_grads(ctx, x_flat, w_xh, hs, d_act), None, dh0, dc)


class RecurrentCell(nn.Module):
    """A from-scratch recurrent cell with ``num_gates`` gates, run over a whole sequence.

    Subclasses set the gate count, which gates go through tanh, the recurrence (an autograd Function)
    and whether b_hh must stay inside it (GRU) or can join the input projection.
    """

    num_gates: int = 1
    tanh_gates: tuple[int, ...] = ()
    recurrence: type[torch.autograd.Function]
    state_size: int = 1  # tensors in the state: h, or (h, c)
    bias_hh_in_recurrence: bool = False
    torch_mode: str = ""  # the matching torch.nn.RNNBase.mode

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
        given = (None,) * self.state_size if state is None else _as_tuple(state)
        if len(given) != self.state_size:
            raise ValueError(f"{type(self).__name__} expects a state of {self.state_size} tensor(s), got {len(given)}")
        initial = tuple(self._initial(x, s) for s in given)
        scale = self.gate_scale()
        bias_x, bias_h = self.bias_xh * scale, self.bias_hh * scale
        if not self.bias_hh_in_recurrence:
            bias_x, bias_h = bias_x + bias_h, None
        out, *last = self._recur(x, self.weight_xh * scale, bias_x, self.weight_hh * scale, bias_h, *initial)
        return out, _from_tuple((out[-1], *last))

    def gate_scale(self) -> Tensor:
        """(G·H,): 2 for the columns of tanh gates, else 1 (see ``_tanh_from_sigmoid``)."""
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

    def _recur(self, *args: Tensor | None) -> tuple[Tensor, ...]:
        """Run the recurrence, in autocast's dtype when autocast is on (as the built-in RNNs do)."""
        device_type = args[0].device.type
        if _autocasts(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            args = tuple(None if a is None else a.to(dtype) for a in args)
        return self.recurrence.apply(*args)


@CELL_CLASSES.register("vanilla")
class VanillaRNN(RecurrentCell):
    """Elman RNN: h_t = tanh(x_t @ W_xh + b_xh + h_{t-1} @ W_hh + b_hh).

    forward(x (N, T, D), h0 (N, H) | None) -> (out (N, T, H), h_T (N, H)).
    """

    num_gates = 1
    tanh_gates = (0,)
    recurrence = _VanillaScan
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
    recurrence = _GRUScan
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
    recurrence = _LSTMScan
    state_size = 2
    torch_mode = "LSTM"
    torch_class = nn.LSTM


def _as_tuple(state: State) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


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
        states = None if state is None else self._check_state(_as_tuple(state), x.shape[0])
        x = x.transpose(0, 1)  # the layers run time-major
        finals: list[tuple[Tensor, ...]] = []
        for layer in range(self.num_layers):
            if layer:
                x = F.dropout(x, self.dropout, self.training)
            outs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                given = None if states is None else tuple(s[index] for s in states)
                out, final = self.cells[index].scan(x.flip(0) if direction else x, _from_tuple(given))
                outs.append(out.flip(0) if direction else out)
                finals.append(_as_tuple(final))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        stacked = tuple(torch.stack(parts) for parts in zip(*finals))
        return x.transpose(0, 1).contiguous(), _from_tuple(stacked)

    def _check_state(self, states: tuple[Tensor, ...], n_batch: int) -> tuple[Tensor, ...]:
        expected = (self.num_layers * self.num_directions, n_batch, self.hidden_size)
        for s in states:
            if tuple(s.shape) != expected:
                raise ValueError(f"expected a state of shape {expected}, got {tuple(s.shape)}")
        return states


def _from_tuple(parts: tuple[Tensor, ...] | None) -> State | None:
    """A cell's or stack's state: one tensor, or the (h, c) pair of an LSTM."""
    return parts if parts is None or len(parts) > 1 else parts[0]


def _unsqueeze_batch(state: State) -> State:
    return _from_tuple(tuple(s.unsqueeze(1) for s in _as_tuple(state)))


def _squeeze_batch(state: State) -> State:
    return _from_tuple(tuple(s.squeeze(1) for s in _as_tuple(state)))


# The cell kinds, in the order reports and tables show them; declared by the registrations above.
CELLS: tuple[str, ...] = tuple(CELL_CLASSES)
