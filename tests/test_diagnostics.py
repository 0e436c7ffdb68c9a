"""Vanishing-gradient diagnostics: ‖∂L/∂h_t‖ per step from the encoder outputs, per-group gradient norms,
the figure and scalars of a real (tiny) training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import read_image_tags, read_scalars
from rnnlab.app.train import train
from rnnlab.callbacks.diagnostics import GRADIENT_FILE, StepGradients, group_grad_norms, read_grad_by_step, unrolled
from rnnlab.cells import build_encoder

IMPLS = ("builtin", "custom")
CELLS = ("vanilla", "gru", "lstm")


def _final_h(state) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
def test_unrolled_encoder_computes_the_same_as_the_whole_sequence(cell, impl):
    torch.manual_seed(0)
    encoder = build_encoder(impl, cell, input_size=3, hidden_size=5, num_layers=2)
    x = torch.randn(4, 7, 3)
    state0 = encoder(torch.randn(4, 2, 3))[1]  # a non-zero initial state
    for start in (None, state0):
        out, state = encoder(x, start)
        out_u, state_u = unrolled(encoder, x, start)
        torch.testing.assert_close(out_u, out, atol=1e-5, rtol=1e-4)
        for a, b in zip(
            state_u if isinstance(state_u, tuple) else (state_u,), state if isinstance(state, tuple) else (state,)
        ):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_step_gradients_equal_backpropagation_through_time_by_hand(impl):
    """Vanilla RNN h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), loss on h_T only:
    ∂L/∂h_{t-1} = W_hh^T (∂L/∂h_t ⊙ (1 - h_t²)), computed here from the hidden states and the weights."""
    torch.manual_seed(1)
    encoder = build_encoder(impl, "vanilla", input_size=2, hidden_size=6).double()
    x, w = torch.randn(5, 9, 2, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    with StepGradients(encoder) as capture:
        out, state = encoder(x)
        (_final_h(state)[-1] @ w).pow(2).sum().backward()
    assert len(capture.norms) == 1 and capture.norms[0].shape == (9,)

    h = out.detach()
    w_hh = encoder.weight_hh_l0 if impl == "builtin" else encoder.cells[0].weight_hh.T  # (H, H) as in h W^T
    delta = 2 * (h[:, -1] @ w)[:, None] * w  # ∂L/∂h_T, (N, H)
    expected = [delta.norm(dim=-1).mean()]
    for t in range(8, 0, -1):
        delta = (delta * (1 - h[:, t] ** 2)) @ w_hh.detach()
        expected.append(delta.norm(dim=-1).mean())
    expected = torch.stack(expected[::-1]).float()
    torch.testing.assert_close(capture.norms[0], expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_bidirectional_encoders_record_output_gradients_and_leave_training_unchanged(impl):
    torch.manual_seed(2)
    encoder = build_encoder(impl, "gru", input_size=2, hidden_size=4, bidirectional=True).double()
    x, w = torch.randn(3, 7, 2, dtype=torch.float64), torch.randn(3, 7, 8, dtype=torch.float64)

    def gradients(capture: bool):
        encoder.zero_grad()
        with StepGradients(encoder) if capture else torch.enable_grad() as hooks:
            out, _ = encoder(x)
            out.retain_grad()
            (out * w).pow(2).sum().backward()
        return out.grad, [p.grad.clone() for p in encoder.parameters()], hooks

    out_grad, plain, _ = gradients(capture=False)
    _, hooked, capture = gradients(capture=True)
    for a, b in zip(plain, hooked):  # the hook only reads the gradient
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(capture.norms[0], out_grad.norm(dim=-1).mean(dim=0).float())


@pytest.mark.parametrize("impl", IMPLS)
def test_vanilla_gradient_vanishes_where_an_lstm_with_open_forget_gates_keeps_it(impl):
    torch.manual_seed(0)
    hidden, steps = 16, 30
    x = torch.randn(8, steps, 2)
    ratios = {}
    for cell in ("vanilla", "lstm"):
        encoder = build_encoder(impl, cell, input_size=2, hidden_size=hidden)
        if cell == "lstm":  # gates i, f, g, o in both layouts: forget-gate bias +5 keeps the cell state
            with torch.no_grad():
                for name, p in encoder.named_parameters():
                    if "bias" in name:
                        p[hidden : 2 * hidden] = 2.5
        with StepGradients(encoder) as capture:
            _final_h(encoder(x)[1])[-1].sum().backward()
        norms = capture.norms[0]
        ratios[cell] = float(norms[0] / norms[-1])
    assert ratios["vanilla"] < 1e-5, ratios
    assert ratios["lstm"] > 1e-2, ratios


def test_group_norms_are_the_norms_of_each_modules_gradients(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("model=gru")
    model = instantiate(cfg.model, task=instantiate(cfg.data).task)
    x, y = torch.randn(4, 40, 1), torch.randint(0, 10, (4,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    norms = group_grad_norms(model)
    assert set(norms) == {"encoder", "head", "total"}  # the flatten readout has no parameters
    for name in ("encoder", "head"):
        grads = [p.grad.flatten() for p in getattr(model, name).parameters()]
        assert norms[name] == pytest.approx(float(torch.cat(grads).norm()), rel=1e-5)
    all_grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert norms["total"] == pytest.approx(float(all_grads.norm()), rel=1e-5)


@pytest.mark.slow
def test_training_run_logs_gradient_figure_scalars_and_data(make_cfg):
    cfg = make_cfg(
        "model=vanilla",
        "model.impl=custom",
        "model.readout=last",
        "trainer.max_epochs=2",
        "callbacks.gradient_diagnostics.batches_per_epoch=2",
    )
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)

    record = json.loads((run_dir / GRADIENT_FILE).read_text())
    assert record["batches_per_epoch"] == 2
    by_epoch = read_grad_by_step(run_dir)
    assert sorted(by_epoch) == [0, 1]
    for norms in by_epoch.values():
        assert len(norms) == 40 and all(math.isfinite(v) and v >= 0 for v in norms) and norms[-1] > 0
        assert norms[0] < norms[-1]  # a small vanilla RNN read at its last state: the gradient fades backwards

    scalars = read_scalars(run_dir)
    for group in ("encoder", "head", "total"):
        values = scalars[f"grad_norm/{group}"]
        assert len(values) == 2 and all(v > 0 for _, v in values)
    for (_, encoder), (_, head), (_, total) in zip(*(scalars[f"grad_norm/{g}"] for g in ("encoder", "head", "total"))):
        # epoch means of per-batch norms with total² = encoder² + head²: bounded by max and sum
        assert max(encoder, head) - 1e-6 <= total <= encoder + head + 1e-6
    ratios = [v for _, v in scalars["grad_norm/first_over_last"]]
    assert ratios == pytest.approx([by_epoch[e][0] / by_epoch[e][-1] for e in (0, 1)], rel=1e-4)
    assert {"diagnostics/grad_by_step", "figures/confusion_matrix"} <= set(read_image_tags(run_dir))


@pytest.mark.slow
def test_turned_off_it_writes_nothing(make_cfg):
    cfg = make_cfg("model=lstm", "callbacks.gradient_diagnostics.batches_per_epoch=0", "test=false")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert not (run_dir / GRADIENT_FILE).exists()
    assert not any(tag.startswith("grad_norm/") for tag in read_scalars(run_dir))
    assert "diagnostics/grad_by_step" not in read_image_tags(run_dir)
