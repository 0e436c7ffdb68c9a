"""Encoder options shared by both implementations (the LSTM forget-gate bias), and a cell added as the recipe says."""

from __future__ import annotations

import pytest
import torch

from helpers import recipe_code
from rnnlab.cells import CELL_CLASSES, CELLS, build_encoder, set_forget_bias, to_torch


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


@pytest.fixture
def toy_cell(monkeypatch) -> str:
    """The docs/development.md "Adding a cell" class, registered as ``toy`` for this test only."""
    monkeypatch.setattr(CELL_CLASSES, "_items", dict(CELL_CLASSES._items))
    exec(recipe_code("Adding a cell").replace("<name>", "toy"), {})
    return "toy"


def test_a_cell_registered_as_the_recipe_says_is_validated_and_trains(make_cfg, toy_cell):
    import math

    from rnnlab.app.train import train

    assert list(CELLS) == ["vanilla", "gru", "lstm", "toy"]  # read from the registry, not a snapshot
    metrics = train(make_cfg("model=vanilla", f"model.cell={toy_cell}", "model.impl=custom", "test=false"))
    assert math.isfinite(metrics["val/loss"])


def test_builtin_for_a_cell_without_a_torch_twin_is_one_line(make_cfg, toy_cell):
    from rnnlab.app.setup import user_error
    from rnnlab.app.train import train

    expected = "model.impl='builtin' is not allowed for model.cell='toy' (torch.nn has no such cell); allowed: custom"
    with pytest.raises(ValueError, match=r"^model\.impl='builtin'") as error:
        build_encoder("builtin", toy_cell, input_size=3, hidden_size=4)
    assert str(error.value) == expected
    with pytest.raises(Exception) as error:
        train(make_cfg("model=vanilla", f"model.cell={toy_cell}", "model.impl=builtin", "test=false"))
    assert user_error(error.value) == expected
