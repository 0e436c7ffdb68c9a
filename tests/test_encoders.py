"""Encoder options shared by both implementations: the LSTM forget-gate bias."""

from __future__ import annotations

import pytest
import torch

from rnnlab.cells import build_encoder, set_forget_bias, to_torch


@pytest.mark.parametrize("impl", ["builtin", "custom"])
def test_forget_bias_sets_only_the_forget_gate_of_every_layer_and_direction(impl):
    torch.manual_seed(0)
    encoder = build_encoder(impl, "lstm", input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    before = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    set_forget_bias(encoder, 1.0)
    builtin = encoder if impl == "builtin" else to_torch(encoder)  # torch.nn names: bias_ih_l{k}[_reverse]
    for suffix in ("l0", "l0_reverse", "l1", "l1_reverse"):
        b_ih, b_hh = getattr(builtin, f"bias_ih_{suffix}").view(4, 5), getattr(builtin, f"bias_hh_{suffix}").view(4, 5)
        torch.testing.assert_close(b_ih[1] + b_hh[1], torch.ones(5))
    for name, p in encoder.named_parameters():  # weights and the other gates' biases untouched
        changed = (p.detach() != before[name]).reshape(4, -1) if "bias" in name else p.detach() != before[name]
        if "bias" in name:
            assert not changed[[0, 2, 3]].any()
        else:
            assert not changed.any()


def test_forget_bias_is_refused_for_cells_without_a_forget_gate(make_cfg):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    cfg = make_cfg("model=gru", "model.forget_bias=1.0")
    datamodule = instantiate(cfg.data)
    with pytest.raises(InstantiationException) as error:
        instantiate(cfg.model, task=datamodule.task)
    assert "model.forget_bias=1.0 is for model=lstm only, not model.cell='gru'" in str(error.value.__cause__)
