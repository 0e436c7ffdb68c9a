"""Generated tasks: generators against their definitions, regression models, stateful training, generation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from helpers import compose_config, read_scalars
from rnnlab.app.generate import generate_from_checkpoint
from rnnlab.app.train import train
from rnnlab.data.synthetic import (
    AddingDataModule,
    DynamicAddingDataModule,
    SineDataModule,
    classic_adding,
    dynamic_adding,
    sine_mixture,
    stateful_chunks,
)
from rnnlab.models.generation import generate


def test_dynamic_adding_targets_follow_the_definition():
    x, y = dynamic_adding(5, 400, (0.25, 0.25, 0.5), torch.Generator().manual_seed(3))
    assert x.shape == (5, 400, 2) and y.shape == (5, 400, 1)
    values, markers = x[..., 0], x[..., 1]
    assert set(markers.unique().tolist()) == {-1.0, 0.0, 1.0}
    assert values.min() >= -1 and values.max() <= 1
    for n in range(5):  # recompute every target with a plain loop over the definition
        previous = None
        for t in range(400):
            expected = 0.0
            if markers[n, t] == 1:
                if previous is not None:
                    expected = float(values[n, t] + previous)
                previous = values[n, t]
            assert float(y[n, t, 0]) == pytest.approx(expected, abs=1e-6)
    share = (markers == 1).float().mean().item()
    assert share == pytest.approx(0.5, abs=0.03)


def test_classic_adding_marks_one_value_in_each_half():
    x, y = classic_adding(200, 50, torch.Generator().manual_seed(0))
    indicator = x[..., 1]
    assert torch.equal(indicator[:, :25].sum(1), torch.ones(200)) and torch.equal(
        indicator[:, 25:].sum(1), torch.ones(200)
    )
    assert torch.allclose((x[..., 0] * indicator).sum(1, keepdim=True), y)
    # The trivial predictor (the constant 1) has MSE 1/6.
    big_x, big_y = classic_adding(20000, 10, torch.Generator().manual_seed(1))
    assert ((big_y - 1) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.01)
    assert AddingDataModule(seq_len=10, num_train=20000).task.trivial_mse == pytest.approx(1 / 6, abs=0.01)


def test_generation_is_deterministic_and_splits_are_independent():
    a, b = AddingDataModule(seq_len=10, num_train=50, seed=4), AddingDataModule(seq_len=10, num_train=50, seed=4)
    assert torch.equal(a.splits["train"].x, b.splits["train"].x)
    assert not torch.equal(a.splits["train"].x[:50], a.splits["val"].x[:50])
    assert not torch.equal(AddingDataModule(seq_len=10, num_train=50, seed=5).splits["train"].x, a.splits["train"].x)
    sine = SineDataModule(series_len=500, seq_len=10)
    assert not torch.allclose(sine.series["train"], sine.series["val"])


def test_sine_windows_predict_the_next_value():
    dm = SineDataModule(series_len=1000, seq_len=20, noise=0.0)
    x, y = dm.splits["train"].x, dm.splits["train"].y
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one step
    assert torch.equal(x[1:, 0], y[:-1, -1])  # consecutive windows are contiguous
    series = sine_mixture(100, [10.0], 0.0, torch.Generator().manual_seed(0))
    assert series.abs().max() <= 1.0 + 1e-6


def test_stateful_chunks_continue_row_by_row():
    series = torch.arange(101, dtype=torch.float32)
    x, y = stateful_chunks(series, seq_len=5, streams=4)
    assert x.shape == (5, 4, 5, 1)
    for k in range(4):
        assert torch.equal(x[k + 1, :, 0], x[k, :, -1] + 1)  # chunk k+1 continues chunk k in every row
    assert torch.equal(y, x + 1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DynamicAddingDataModule(seq_len=1), r"data.seq_len=1 is not allowed; must be an integer >= 2"),
        (lambda: DynamicAddingDataModule(num_sequences=0), r"data.num_sequences=0 must be a positive integer"),
        (
            lambda: DynamicAddingDataModule(seq_len=10, marker_probs=(0.5, 0.5, 0.5)),
            r"data.marker_probs=\[0.5, 0.5, 0.5\]",
        ),
        (lambda: AddingDataModule(seq_len=0), r"data.seq_len=0"),
        (lambda: AddingDataModule(num_val=-1), r"data.num_val=-1"),
        (
            lambda: SineDataModule(series_len=30, seq_len=50),
            r"data.series_len=30 is too short: it must hold one window",
        ),
        (lambda: SineDataModule(periods=[]), r"data.periods=\[\]"),
        (lambda: SineDataModule(series_len=200, seq_len=50, stateful=True, batch_size=8), r"too short"),
    ],
)
def test_nonsense_sizes_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


SMALL_DATA = {
    "adding": ["data.seq_len=12", "data.num_train=60", "data.num_val=20", "data.num_test=20", "data.batch_size=20"],
    "adding_dynamic": ["data.seq_len=40", "data.num_sequences=3"],
    "sine": ["data.series_len=400", "data.seq_len=20", "data.batch_size=8"],
}


@pytest.mark.parametrize("impl", ["builtin", "custom"])
@pytest.mark.parametrize("model", ["vanilla", "gru", "lstm"])
@pytest.mark.parametrize("data", sorted(SMALL_DATA))
def test_each_task_trains_with_each_model(make_cfg, data, model, impl):
    cfg = make_cfg(f"data={data}", f"model={model}", f"model.impl={impl}", *SMALL_DATA[data])
    assert cfg.optimized_metric == "val/mse_best" and cfg.optimized_mode == "min"
    metrics = train(cfg)
    assert math.isfinite(metrics["val/mse_best"]) and metrics["val/mse_ratio"] > 0
    assert metrics["test/mse"] >= 0
    if data == "adding":
        assert 0 <= metrics["test/within_tol"] <= 1


def test_regression_run_logs_metrics_and_figures(make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(
        "data=sine",
        "model=gru",
        *SMALL_DATA["sine"],
        "callbacks.prediction_figures.seed_len=20",
        "callbacks.prediction_figures.generate_steps=30",
    )
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert {"val/mse", "val/mse_ratio", "val/mse_best", "test/mse", "test/mse_ratio"} <= set(read_scalars(run_dir))
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    accumulator.Reload()
    assert {"figures/prediction", "figures/generation"} <= set(accumulator.Tags()["images"])
    image = accumulator.Images("figures/generation")[0]
    assert image.width > 100 and image.height > 50


def test_classification_logs_no_regression_figures(make_cfg):
    cfg = make_cfg("model=gru")
    train(cfg)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(cfg.paths.output_dir)
    accumulator.Reload()
    images = set(accumulator.Tags()["images"])
    assert not images & {"figures/prediction", "figures/generation"}
    assert "figures/confusion_matrix" in images  # what a classification test logs instead


def test_stateful_training_carries_the_state_detached(make_cfg):
    cfg = make_cfg("data=sine", "data.stateful=true", "model=lstm", *SMALL_DATA["sine"])
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, task=datamodule.task)
    batches = list(datamodule.train_dataloader())
    model.on_train_epoch_start()
    model.training_step(batches[0], 0)
    carried = model._carried_state["train"]
    assert all(not s.requires_grad for s in carried)
    expected = model.predict_with_state(batches[1][0], carried)[0]
    loss = model.training_step(batches[1], 1)
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(expected, batches[1][1]).item(), rel=1e-6)
    model.on_train_epoch_start()
    assert "train" not in model._carried_state
    assert math.isfinite(train(cfg)["val/mse"])


def test_generate_feeds_predictions_back(make_cfg):
    cfg = make_cfg("data=sine", "model=gru", *SMALL_DATA["sine"])
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, task=datamodule.task).double()
    seed = torch.randn(2, 7, 1, dtype=torch.float64)
    generated = generate(model, seed, steps=5)
    assert generated.shape == (2, 5, 1) and generated.dtype == torch.float64
    # Step by step by hand: the last prediction of the seed, then each output fed back as the next input.
    sequence = seed
    for step in range(5):
        next_value = model(sequence)[:, -1:]
        assert torch.allclose(generated[:, step : step + 1], next_value, atol=1e-10)
        sequence = torch.cat([sequence, next_value], dim=1)


def test_generate_refuses_tasks_that_cannot_generate(make_cfg):
    cfg = make_cfg("data=adding", *SMALL_DATA["adding"])
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, task=datamodule.task)
    with pytest.raises(ValueError, match="cannot generate"):
        generate(model, torch.zeros(1, 3, 2), steps=3)


def test_generate_command_writes_figure_and_series(make_cfg, tmp_path, data_dir):
    cfg = make_cfg("data=sine", "model=gru", *SMALL_DATA["sine"])
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    gen_cfg = compose_config("generate", [f"ckpt={ckpt}", "seed_len=20", "length=40"], tmp_path / "gen", data_dir)
    mse = generate_from_checkpoint(gen_cfg)
    assert math.isfinite(mse)
    assert (tmp_path / "gen" / "generation.png").is_file() and (tmp_path / "gen" / "generation.npz").is_file()
