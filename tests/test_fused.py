"""The fused C++ LSTM kernels (rnnlab.cells.fused): built on first use, equal to the eager path, a safe fallback.

The parity, gradcheck and reference tests of test_cells.py run the LSTM through these kernels too
(CPU, float32/float64); here they are compared with the eager recurrence directly, on sizes that split
the batch across threads and leave vector remainders.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from rnnlab.cells import LSTM, fused

HAS_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None


def run(cell: LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, use_fused: bool):
    """Outputs, final (h, c) and every gradient of a loss on all of them, with or without the fused kernels."""
    previous, fused.enabled = fused.enabled, use_fused
    try:
        cell.zero_grad(set_to_none=True)
        x = x.clone().requires_grad_()
        state = None if state is None else tuple(s.clone().requires_grad_() for s in state)
        out, (h, c) = cell(x, state)
        (out.sin().sum() + h.cos().sum() + (c * c).sum()).backward()
        grads = [x.grad, *(() if state is None else (s.grad for s in state)), *(p.grad for p in cell.parameters())]
        return [out, h, c, *grads]
    finally:
        fused.enabled = previous


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the cells run eagerly")
def test_kernels_build_and_apply_to_cpu_float_tensors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed build only warns: make it fail the test
        assert fused.lstm_ops(torch.zeros(1)) is not None
    assert fused.lstm_ops(torch.zeros(1, dtype=torch.float64)) is not None
    assert fused.lstm_ops(torch.zeros(1, dtype=torch.bfloat16)) is None  # autocast's dtype: eager
    assert fused.lstm_ops(torch.zeros(1, device="meta")) is None  # any other device: eager


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the cells run eagerly")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "state"])
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["float64", "float32"]
)
# 60 × 37 (rows × units) is more than one thread's least share (1024), so two threads split the batch.
@pytest.mark.parametrize(("batch", "hidden"), [(3, 5), (60, 37)])
def test_fused_matches_eager(batch, hidden, dtype, tolerance, with_state, threads):
    torch.manual_seed(0)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cell = LSTM(3, hidden).to(dtype)
        x = torch.randn(batch, 7, 3, dtype=dtype)
        state = tuple(torch.randn(batch, hidden, dtype=dtype) for _ in range(2)) if with_state else None
        eager, ours = run(cell, x, state, use_fused=False), run(cell, x, state, use_fused=True)
    finally:
        torch.set_num_threads(saved_threads)
    assert len(ours) == len(eager)
    for a, b in zip(ours, eager):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance * b.abs().max().item())


def test_a_failed_build_warns_once_then_runs_eagerly(monkeypatch):
    def no_compiler():
        raise RuntimeError("Error building extension 'rnnlab_fused'\nmain.cpp:1:1: error: no compiler here")

    monkeypatch.setattr(fused, "_build", no_compiler)
    monkeypatch.setattr(fused, "_ops", functools.cache(fused._ops.__wrapped__))  # a fresh cache, restored after
    torch.manual_seed(0)
    cell, x = LSTM(3, 5), torch.randn(4, 6, 3)
    with pytest.warns(
        RuntimeWarning, match=r"could not build the fused LSTM kernels \(RuntimeError: main.cpp:1:1: error: no compiler"
    ):
        out = run(cell, x, None, use_fused=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call does not warn again
        again = run(cell, x, None, use_fused=True)
    for a, b, c in zip(out, again, run(cell, x, None, use_fused=False)):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_environment_variable_forces_eager():
    code = "from rnnlab.cells import fused; print(fused.enabled, fused.lstm_ops(__import__('torch').zeros(1)))"
    env = {**os.environ, "RNNLAB_FUSED": "0"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "None"]
