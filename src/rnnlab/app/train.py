"""Training one run from a composed config: fit, test, record its hyperparameters and final metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from rnnlab.app.build import build, set_threads
from rnnlab.app.launch import check_launch
from rnnlab.app.rundirs import RUN_CONFIG, VOCABULARY
from rnnlab.app.validate import validate
from rnnlab.errors import metric_not_logged
from rnnlab.models import RecurrentModel
from rnnlab.sweep.trial import trial_callbacks


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HPARAMS tab: model, data, trainer budget, seed."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    container = {
        "model": resolved["model"],
        "data": resolved["data"],
        "trainer": {k: resolved["trainer"].get(k) for k in ("max_epochs", "gradient_clip_val", "precision")},
        "seed": resolved["seed"],
    }
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in ("_target_", "_partial_", "data_dir"):
                    visit(f"{prefix}/{key}" if prefix else key, value)
        else:
            flat[prefix] = node if isinstance(node, (int, float, str, bool)) else str(node)

    visit("", container)
    return flat


def log_hparams(loggers: list[Logger], params: dict[str, Any], metric_names: tuple[str, ...]) -> None:
    """Write the HPARAMS summary declaring ``metric_names``; TensorBoard fills them from the run's scalars.

    Lightning's ``log_hyperparams(params, metrics)`` would also write the metric values as scalars at one
    step, which would put a stray point on the real metric curves; only the summary is written here.
    """
    from torch.utils.tensorboard.summary import hparams

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            experiment, session_start, session_end = hparams(params, {name: float("nan") for name in metric_names})
            writer = logger.experiment._get_file_writer()
            for summary in (experiment, session_start, session_end):
                writer.add_summary(summary)
            writer.flush()
        else:
            logger.log_hyperparams(params)


def _checkpoint_callback(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The callback keeping the best checkpoint (the one with a monitored metric; last.ckpt's has none)."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)


def train(cfg: DictConfig, extra_callbacks: list[pl.Callback] = ()) -> dict[str, float]:
    """Fit, then test the best checkpoint (or the final weights: ``test_ckpt=last``).

    Returns every final metric (val/*, test/*) as floats.

    Under DDP every rank runs this: only rank 0 writes the run directory's files (config, vocabulary, logs,
    checkpoints), the ranks Lightning launches reuse rank 0's run directory, and every rank returns rank 0's
    metrics (synced across ranks when logged).
    """
    validate(cfg)
    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    resuming = bool(cfg.get("ckpt_path"))

    # A sweep trial reports to its Optuna trial every validation epoch and can be pruned.
    datamodule, model, trainer = build(cfg, [*extra_callbacks, *trial_callbacks(cfg)])
    check_launch(trainer)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))
        vocabulary = getattr(datamodule, "vocabulary", None)
        if vocabulary is not None:  # text: sampling and evaluation must use the training vocabulary
            vocabulary.save(run_dir / VOCABULARY)
        if not resuming:
            log_hparams(trainer.loggers, flat_hparams(cfg), model.summary_metrics)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    checkpoint = _checkpoint_callback(trainer)
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if cfg.get("test", True):
        # ckpt_path None: the model as fit left it (its final weights)
        tested = best if cfg.get("test_ckpt", "best") == "best" else None
        trainer.test(model, datamodule=datamodule, ckpt_path=tested, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    for logger in trainer.loggers:
        logger.finalize("success")

    metrics = trainer.strategy.broadcast(metrics, src=0)  # one answer, whichever rank is asked
    if trainer.is_global_zero:
        print(summary_line(cfg, model, metrics, run_dir))
    # Lightning leaves a DDP process group alive; a gloo group still alive when the interpreter exits can
    # abort the finished process ("terminate called without an active exception", exit code -6).
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        trainer.strategy.barrier("rnnlab-teardown")
        torch.distributed.destroy_process_group()
    return metrics


def summary_line(cfg: DictConfig, model: RecurrentModel, metrics: dict[str, float], run_dir: Path) -> str:
    shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.endswith("_best") or k.startswith("test/"))
    return f"[rnnlab] {cfg.run_name} params={model.num_parameters:,} {shown} run_dir={run_dir}"


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float:
    """The value of ``cfg.optimized_metric`` for a sweeper; a clear error if the run did not log it."""
    name = cfg.optimized_metric
    if name not in metrics:
        raise metric_not_logged(name, metrics)
    return metrics[name]
