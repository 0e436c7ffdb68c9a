"""The training app: config composition, tiny runs into TensorBoard, resume, eval."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.utils import instantiate

from helpers import CONF, compose_config, read_hparams, read_scalars
from rnnlab.app.evaluate import evaluate
from rnnlab.app.resume import resume_config
from rnnlab.app.train import optimized_value, train

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
CLASSIFIER_TAGS = {
    "train/loss_step",
    "train/loss_epoch",
    "train/acc",
    "val/loss",
    "val/acc",
    "val/acc_best",
    "test/loss",
    "test/acc",
}


def test_model_options_are_the_three_cells():
    assert MODELS == ["gru", "lstm", "vanilla"]


@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_data_composes_and_builds(make_cfg, model, data):
    cfg = make_cfg(f"model={model}", f"data={data}", "trainer=cpu")
    assert cfg.model.cell == model and cfg.trainer.accelerator == "cpu"
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model, task=datamodule.task)
    assert module.hparams.cell == model
    assert cfg.task_name == data and cfg.run_name == f"{model}-builtin-h8"


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer=gpu"],
        ["trainer=default"],
        ["logger=csv"],
        ["callbacks=early_stopping"],
        ["callbacks=none"],
        ["experiment=lab_recipe"],
        *[[f"experiment={p.stem}"] for p in sorted((CONF / "experiment").glob("mnist1d_best_*"))],
        ["debug=fdr"],
        ["debug=limit"],
        ["model/optimizer=adam", "~model/scheduler"],
    ],
    ids=lambda o: " ".join(o),
)
def test_other_config_options_compose(make_cfg, overrides):
    cfg = make_cfg(*overrides, tiny=False)
    assert cfg.model.optimizer.lr > 0


def test_progress_bar_off_leaves_out_the_progress_bar_callback(make_cfg):
    from pytorch_lightning.callbacks import ProgressBar

    from rnnlab.app.build import build

    cfg = make_cfg("trainer.enable_progress_bar=false", tiny=False)
    assert cfg.callbacks.rich_progress_bar is not None  # still configured: build must drop it
    _, _, trainer = build(cfg)
    assert not any(isinstance(cb, ProgressBar) for cb in trainer.callbacks)


def test_test_ckpt_last_tests_the_final_weights(make_cfg, tmp_path, data_dir):
    import torch

    # "Best" = the highest val/loss, so the best checkpoint is an early epoch and differs from the final weights.
    cfg = make_cfg(
        "test_ckpt=last",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.monitor=val/loss",
        "callbacks.model_checkpoint.mode=max",
    )
    metrics = train(cfg)
    checkpoint_dir = Path(cfg.paths.output_dir) / "checkpoints"
    best = next(checkpoint_dir.glob("best-*.ckpt"))
    assert best.name != "best-epoch002.ckpt"
    # last.ckpt holds the final epoch even though the monitored metric stopped improving (resume needs it)
    assert torch.load(checkpoint_dir / "last.ckpt", weights_only=False)["epoch"] == 2
    tested = {}
    for name, ckpt in (("last", checkpoint_dir / "last.ckpt"), ("best", best)):
        tested[name] = evaluate(compose_config("eval", [f"ckpt_path={ckpt}"], tmp_path / f"eval-{name}", data_dir))
    assert tested["last"] == pytest.approx({k: v for k, v in metrics.items() if k.startswith("test/")}, abs=1e-6)
    assert tested["best"]["test/loss"] != pytest.approx(metrics["test/loss"], abs=1e-6)


@pytest.mark.slow
def test_a_tuned_experiment_trains_end_to_end_with_augmentation(make_cfg):
    """experiment=mnist1d_best_gru at a tiny size: augmented training batches through a real Trainer."""
    cfg = make_cfg("experiment=mnist1d_best_gru")
    assert cfg.model.cell == "gru" and cfg.data.augment.shift > 0
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1


def test_lab_recipe_is_the_course_recipe(make_cfg):
    cfg = make_cfg("experiment=lab_recipe", tiny=False)
    assert (cfg.model.hidden_size, cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay) == (10, 0.01, 0.001)
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and "scheduler" not in cfg.model
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.model.readout) == (100, 100, "flatten")


@pytest.mark.parametrize("model", MODELS)
def test_tiny_run_logs_metrics_and_hparams_to_tensorboard(make_cfg, model):
    cfg = make_cfg(f"model={model}")
    metrics = train(cfg)
    run_dir = Path(cfg.paths.output_dir)

    scalars = read_scalars(run_dir)
    assert CLASSIFIER_TAGS <= set(scalars), sorted(scalars)
    assert 0.0 <= scalars["test/acc"][-1][1] <= 1.0
    assert scalars["test/acc"][-1][1] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert optimized_value(cfg, metrics) == metrics["val/acc_best"]

    hparams, metric_names = read_hparams(run_dir)
    assert hparams["model.cell"] == model and hparams["model.hidden_size"] == 8  # the curated settings
    assert hparams["model.optimizer.lr"] == pytest.approx(cfg.model.optimizer.lr)
    assert not [key for key in hparams if "_target_" in key or key.startswith("paths.")]
    assert metric_names == []  # no experiment of its own: TensorBoard builds one from every session
    assert "hp_metric" not in scalars
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "config.yaml").is_file()


def test_readouts_and_stacking_train(make_cfg):
    for overrides in (
        ["model.readout=last", "model.bidirectional=true"],
        ["model.readout=mean", "model.num_layers=2", "model.dropout=0.1"],
    ):
        metrics = train(make_cfg(*overrides, "test=false", run="-".join(overrides)))
        assert math.isfinite(metrics["val/loss"])


def test_label_smoothing_and_readout_dropout_act_in_training_only(make_cfg):
    import torch
    import torch.nn.functional as F

    cfg = make_cfg("model.readout_dropout=0.5", "model.label_smoothing=0.2")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, task=datamodule.task)
    x, y = datamodule.splits["train"].x[:16], datamodule.splits["train"].y[:16]
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))  # dropout on the head's inputs
    torch.manual_seed(1)
    loss = model.cross_entropy("train", model(x), y)
    torch.manual_seed(1)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y, label_smoothing=0.2).item())
    model.eval()
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(logits, model(x))
        val_loss = model.cross_entropy("val", logits, y).item()
    assert val_loss == pytest.approx(F.cross_entropy(logits, y).item())
    assert val_loss != pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.2).item())


def test_label_smoothing_is_refused_for_regression(make_cfg):
    from hydra.errors import InstantiationException

    cfg = make_cfg("data=adding", "model.label_smoothing=0.1")
    datamodule = instantiate(cfg.data)
    with pytest.raises(InstantiationException) as error:
        instantiate(cfg.model, task=datamodule.task)
    assert "model.label_smoothing=0.1 is for classification and language modelling" in str(error.value.__cause__)


def test_missing_optimized_metric_names_the_logged_ones(make_cfg):
    cfg = make_cfg("optimized_metric=val/f1", "callbacks.model_checkpoint.monitor=val/acc", "test=false")
    # Refused before training, naming the metrics the model logs at every validation.
    with pytest.raises(ValueError, match=r"optimized_metric='val/f1' is not allowed; allowed: .*val/acc_best"):
        optimized_value(cfg, train(cfg))
    with pytest.raises(ValueError, match=r"optimized_metric='val/f1' was not logged; logged: .*val/acc_best"):
        optimized_value(cfg, {"val/acc_best": 0.5})


class CrashAtEpoch(pl.Callback):
    """Simulates a crash at the start of an epoch (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(make_cfg):
    # 2 layers with dropout: the resume must also restore the RNG that dropout draws from.
    setup = [
        "model=gru",
        "model.num_layers=2",
        "model.dropout=0.2",
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
    ]
    straight = make_cfg(*setup, run="straight")
    expected = train(straight)

    interrupted = make_cfg(*setup, run="interrupted")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(interrupted, extra_callbacks=[CrashAtEpoch(2)])
    run_dir = Path(interrupted.paths.output_dir)
    resumed_cfg = resume_config(str(run_dir / "checkpoints" / "last.ckpt"), overrides=[])
    assert resumed_cfg.model.num_layers == 2 and resumed_cfg.trainer.max_epochs == 4
    resumed = train(resumed_cfg)

    assert resumed == pytest.approx(expected, abs=1e-6)
    want, got = read_scalars(Path(straight.paths.output_dir)), read_scalars(run_dir)
    assert set(got) == set(want)
    for tag in want:  # event files are read in name order, so compare the sorted points
        got_points, want_points = sorted(got[tag]), sorted(want[tag])
        assert [s for s, _ in got_points] == [s for s, _ in want_points], tag  # no duplicated or missing steps
        assert [v for _, v in got_points] == pytest.approx([v for _, v in want_points], abs=1e-5), tag


def test_resume_refuses_to_change_the_model(make_cfg):
    cfg = make_cfg("model=gru", "test=false", "~model/scheduler")  # a constant lr: the run can be extended
    train(cfg)
    ckpt = str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="'model=lstm' cannot change on resume"):
        resume_config(ckpt, ["model=lstm"])
    assert resume_config(ckpt, ["trainer.max_epochs=3"]).trainer.max_epochs == 3


def test_resume_refuses_to_change_a_one_cycle_schedule(make_cfg):
    cfg = make_cfg("model=gru", "test=false")
    train(cfg)
    ckpt = str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    with pytest.raises(
        ValueError, match=r"trainer.max_epochs=3 \(the run has 1\) cannot change on resume of a one-cycle"
    ):
        resume_config(ckpt, ["trainer.max_epochs=3"])


def test_eval_reproduces_the_test_metrics_of_the_run(make_cfg, tmp_path, data_dir):
    cfg = make_cfg("model=lstm")
    metrics = train(cfg)
    checkpoint_dir = Path(cfg.paths.output_dir) / "checkpoints"
    best = next(p for p in checkpoint_dir.glob("best-*.ckpt"))
    eval_cfg = compose_config("eval", [f"ckpt_path={best}"], tmp_path / "eval", data_dir)
    evaluated = evaluate(eval_cfg)
    assert evaluated == pytest.approx({k: v for k, v in metrics.items() if k.startswith("test/")}, abs=1e-6)
    assert {"test/acc", "test/loss"} <= set(read_scalars(tmp_path / "eval"))
