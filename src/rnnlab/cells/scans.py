"""The recurrences of the from-scratch cells: ``torch.autograd.Function``s over a whole sequence, with
hand-written backward passes (back-propagation through time).

Each forward computes the input projection ``x @ W_xh + b`` for all steps in one matrix product, adds
``h @ W_hh`` into it step by step in place and runs the gate arithmetic on preallocated buffers without
recording a graph; each backward is per step one matrix product and a few element-wise kernels, the
derivative factors and the weight gradients for all steps at once. tanh is computed as 2σ(2a) − 1 (torch's
CPU sigmoid kernel is several times faster than its tanh). On the CPU in float32/float64 the LSTM's time
loops run in C++ (``rnnlab.cells.fused``: the gate arithmetic of a step in one loop, each thread taking a
block of batch rows through the whole sequence), compiled on first use; elsewhere, or with
``RNNLAB_FUSED=0``, the same recurrence runs eagerly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnlab.cells import fused


def autocasts(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


@contextmanager
def _autocast_off(t: Tensor):
    """The recurrences write into buffers of their inputs' dtype: keep autocast from changing it."""
    if autocasts(t.device.type):
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


class VanillaScan(torch.autograd.Function):
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


class GRUScan(torch.autograd.Function):
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


class LSTMScan(torch.autograd.Function):
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
