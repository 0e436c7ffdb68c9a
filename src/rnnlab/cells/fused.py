"""Fused CPU kernels for the LSTM recurrence of ``rnnlab.cells``, compiled on first use.

Why: the eager LSTM runs, per time step, a matrix product and about six small element-wise kernels
on (N, H)..(N, 4H) tensors. At the benchmark's size (N = 100, H = 128) the (N, H) ones are below
torch's parallel grain size, so they run on one thread, and each kernel pays dispatch overhead; torch.nn's
LSTM (oneDNN) fuses them. Here the time loops run in C++, one vectorised loop per step doing all the
gate arithmetic; and since batch rows never interact, each of torch's threads (``at::parallel_for``)
takes a block of rows through the whole sequence, its matrix products included: one parallel region
per sequence instead of several per step. The ops::

    torch.ops.rnnlab_fused.lstm_forward(act, w_hh, hs, cs, tanh_c)
    torch.ops.rnnlab_fused.lstm_backward(act, w_hh_t, cs, tanh_c, d_out, dh0, dc, d_act)

with the buffers and conventions of ``cells.scans.LSTMScan`` (see the C++ below), which calls them and
keeps its eager loop as the fallback.

Building: ``torch.utils.cpp_extension.load_inline`` compiles the source the first time a process
needs it (about 10-20 s; g++ with OpenMP), into torch's extensions directory (``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``); later processes load the cached library. Nothing is built at
install time. If building fails (no compiler, ...), one warning, then the eager path.

``lstm_ops(t)`` says whether the kernels apply: CPU, float32 or float64, not while ``torch.compile``
traces (it cannot see into the op), and ``enabled`` — False when the environment variable
``RNNLAB_FUSED=0``, or set it in code — forces the eager path (tests compare the two).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import torch

from rnnlab.console import say

enabled: bool = os.environ.get("RNNLAB_FUSED", "1") != "0"

_DTYPES = (torch.float32, torch.float64)

_SOURCE = r"""
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// The fewest (batch row, hidden unit) pairs worth a thread of their own (each thread takes a block of rows
// through the whole sequence): small batches stay on one thread.
constexpr int64_t kGrainElements = 1024;

// exp(x) for float (Cephes' expf: range reduction, degree-6 polynomial, relative error ~1e-7),
// written so that g++ vectorises the loops calling it; std::exp stays scalar without -ffast-math.
// x is clamped to [-87, 88], where the result is finite and normal.
inline float exp_(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);  // x = n ln2 + r, |r| <= ln2 / 2
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
inline double exp_(double x) { return std::exp(x); }

template <typename T> inline T sigmoid(T a) { return T(1) / (T(1) + exp_(-a)); }

// tanh(a / 2) = 2σ(a) − 1: the tanh gate's pre-activation arrives doubled (cells.RecurrentCell.gate_scale).
template <typename T> inline T tanh_half(T a) { return T(2) * sigmoid(a) - T(1); }

// One forward step on a block of rows: xg (rows, 4H: i, f, g, o) holds x_t W_xh + b and is overwritten with
// σ(i), σ(f), tanh(g), σ(o); hg (rows, 4H) = h_{t-1} @ w_hh; c_prev in, c, tc = tanh(c) and h out (rows, H).
template <typename T>
void forward_rows(T* __restrict xg, const T* __restrict hg, const T* __restrict c_prev, T* __restrict c,
                  T* __restrict tc, T* __restrict h, int64_t rows, int64_t H) {
  for (int64_t n = 0; n < rows; ++n) {
    T* __restrict a = xg + n * 4 * H;
    const T* __restrict b = hg + n * 4 * H;
    const int64_t row = n * H;
    for (int64_t j = 0; j < H; ++j) {
      const T i = sigmoid(a[j] + b[j]), f = sigmoid(a[H + j] + b[H + j]);
      const T g = tanh_half(a[2 * H + j] + b[2 * H + j]), o = sigmoid(a[3 * H + j] + b[3 * H + j]);
      const T c_j = f * c_prev[row + j] + i * g;
      const T tc_j = tanh_half(T(2) * c_j);
      a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
      c[row + j] = c_j, tc[row + j] = tc_j, h[row + j] = o * tc_j;
    }
  }
}

// One backward step on a block of rows: the gradient of h_t is dh = d_out_t + dh_next (what h_t got back
// through step t+1's product); dc (rows, H) holds dc_{t+1}·σ(f_{t+1}) and becomes dc_t·σ(f_t); d_act
// (rows, 4H) gets the gradients of the pre-activations (g's doubled, as in the forward).
template <typename T>
void backward_rows(const T* __restrict act, const T* __restrict c_prev, const T* __restrict tc,
                   const T* __restrict d_out, const T* __restrict dh_next, T* __restrict dc, T* __restrict d_act,
                   int64_t rows, int64_t H) {
  for (int64_t n = 0; n < rows; ++n) {
    const T* __restrict a = act + n * 4 * H;
    T* __restrict d = d_act + n * 4 * H;
    const int64_t row = n * H;
    for (int64_t j = 0; j < H; ++j) {
      const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], tc_j = tc[row + j];
      const T dh = d_out[row + j] + dh_next[row + j];
      const T dc_j = dc[row + j] + dh * o * (T(1) - tc_j * tc_j);
      d[j] = dc_j * g * (i - i * i);
      d[H + j] = dc_j * c_prev[row + j] * (f - f * f);
      d[2 * H + j] = dc_j * i * (T(0.5) - T(0.5) * g * g);
      d[3 * H + j] = dh * tc_j * (o - o * o);
      dc[row + j] = dc_j * f;
    }
  }
}

void check(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == like.scalar_type() && t.is_contiguous(),
              "rnnlab_fused: ", name, " must be a contiguous CPU tensor of dtype ", like.scalar_type());
}

// act (T, N, 4H): xg in, activations out; w_hh (H, 4H); hs, cs (T+1, N, H) with h0, c0 at index 0,
// step t writing index t+1; tanh_c (T, N, H).
// Batch rows never interact, so each thread runs the whole time loop on its own block of rows: one
// parallel region per sequence, not one per step, and its matrix product is single-threaded.
void lstm_forward(at::Tensor act, at::Tensor w_hh, at::Tensor hs, at::Tensor cs, at::Tensor tanh_c) {
  for (auto* t : {&act, &hs, &cs, &tanh_c}) check(*t, act, "every buffer");
  const int64_t steps = act.size(0), batch = act.size(1), H = hs.size(2);
  AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "lstm_forward", [&] {
    at::parallel_for(0, batch, std::max<int64_t>(1, kGrainElements / H), [&](int64_t begin, int64_t end) {
      // The worker threads do not share the caller's no-grad mode; the products must not see autograd.
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      const int64_t rows = end - begin;
      // The block's rows of a (T, N, K) buffer at step t, and a pointer to them.
      auto block = [&](const at::Tensor& buffer, int64_t t) { return buffer[t].narrow(0, begin, rows); };
      auto ptr = [&](const at::Tensor& buffer, int64_t t) {
        return buffer[t].data_ptr<scalar_t>() + begin * buffer.size(2);
      };
      at::Tensor hg = at::empty({rows, 4 * H}, act.options());
      for (int64_t t = 0; t < steps; ++t) {
        at::mm_out(hg, block(hs, t), w_hh);
        forward_rows(ptr(act, t), hg.const_data_ptr<scalar_t>(), ptr(cs, t), ptr(cs, t + 1), ptr(tanh_c, t),
                     ptr(hs, t + 1), rows, H);
      }
    });
  });
}

// act, cs, tanh_c as the forward left them; w_hh_t (4H, H); d_out (T, N, H); dc (N, H): dc_T in,
// dc_0 out; dh0 (N, H) out; d_act (T, N, 4H) out. Parallel over blocks of rows, as the forward.
void lstm_backward(at::Tensor act, at::Tensor w_hh_t, at::Tensor cs, at::Tensor tanh_c, at::Tensor d_out,
                   at::Tensor dh0, at::Tensor dc, at::Tensor d_act) {
  for (auto* t : {&act, &cs, &tanh_c, &d_out, &dh0, &dc, &d_act}) check(*t, act, "every buffer");
  const int64_t steps = act.size(0), batch = act.size(1), H = cs.size(2);
  dh0.zero_();  // dh0 carries dh_next from step to step, and ends as d h0 = d_act_0 @ w_hh_t
  AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "lstm_backward", [&] {
    at::parallel_for(0, batch, std::max<int64_t>(1, kGrainElements / H), [&](int64_t begin, int64_t end) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;  // as in the forward
      const int64_t rows = end - begin;
      auto ptr = [&](const at::Tensor& buffer, int64_t t) {
        return buffer[t].data_ptr<scalar_t>() + begin * buffer.size(2);
      };
      at::Tensor dh_next = dh0.narrow(0, begin, rows);
      for (int64_t t = steps - 1; t >= 0; --t) {
        backward_rows(ptr(act, t), ptr(cs, t), ptr(tanh_c, t), ptr(d_out, t), dh_next.const_data_ptr<scalar_t>(),
                      dc.data_ptr<scalar_t>() + begin * H, ptr(d_act, t), rows, H);
        at::mm_out(dh_next, d_act[t].narrow(0, begin, rows), w_hh_t);
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY(rnnlab_fused, m) {
  m.def("lstm_forward(Tensor(a!) act, Tensor w_hh, Tensor(b!) hs, Tensor(c!) cs, Tensor(d!) tanh_c) -> ()");
  m.def("lstm_backward(Tensor act, Tensor w_hh_t, Tensor cs, Tensor tanh_c, Tensor d_out, Tensor(a!) dh0, "
        "Tensor(b!) dc, Tensor(c!) d_act) -> ()");
}

TORCH_LIBRARY_IMPL(rnnlab_fused, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
"""


def _isa_flags() -> list[str]:
    """Vector instructions for the loops: those torch's own kernels use on this CPU."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        return ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"]
    if capability == "AVX2":
        return ["-mavx2", "-mfma"]
    return []


def _build() -> None:
    """Compile (or load the cached build of) the kernels, registering ``torch.ops.rnnlab_fused``."""
    from torch.utils.cpp_extension import get_default_build_root, load_inline

    capability = torch.backends.cpu.get_cpu_capability().replace(" ", "_")
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()  # as torch's own default
    # One directory per torch version and instruction set: a cached build only loads where it was built for.
    directory = os.path.join(root, f"rnnlab_fused-torch{torch.__version__}-{capability}")
    os.makedirs(directory, exist_ok=True)
    if not os.path.exists(os.path.join(directory, "rnnlab_fused.so")):
        say(f"compiling the fused LSTM kernels (once, 10-20 s) into {directory}")
    with _exclusive(os.path.join(directory, "build.flock")):
        # torch's own lock file outlives a build that was killed, and would make every later build wait for
        # ever; holding the lock above, no other rnnlab process is building, so one found here is stale.
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, "lock"))
        load_inline(
            "rnnlab_fused",
            cpp_sources=[_SOURCE],
            extra_cflags=[
                "-O3",
                "-fno-trapping-math",
                "-fopenmp",
                *_isa_flags(),
            ],  # -fno-trapping-math: lets exp_ vectorise
            extra_ldflags=["-fopenmp"],  # resolves to the libgomp torch has loaded
            build_directory=directory,
            is_python_module=False,
            no_implicit_headers=True,  # torch/extension.h would triple the compile time
        )


@contextlib.contextmanager
def _exclusive(path: str):
    """An inter-process lock that the OS releases when its holder dies (no lock on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.cache
def _ops():
    """``torch.ops.rnnlab_fused``, built on the first call; None (after one warning) if it cannot be built."""
    try:
        _build()
    except Exception as error:  # no compiler, a compiler error, an unwritable cache directory, ...
        lines = str(error).strip().splitlines() or [""]
        reason = next((line for line in lines if "error:" in line), lines[0])  # the compiler's, not its command line
        warnings.warn(
            f"rnnlab: could not build the fused LSTM kernels ({type(error).__name__}: {reason}); "
            "using the slower eager implementation",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return torch.ops.rnnlab_fused


def lstm_ops(like: torch.Tensor):
    """``torch.ops.rnnlab_fused`` if the fused kernels apply to tensors like ``like``, else None (use eager)."""
    if not enabled or like.device.type != "cpu" or like.dtype not in _DTYPES or torch.compiler.is_compiling():
        return None
    return _ops()
