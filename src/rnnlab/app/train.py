"""Training one run from a composed config: fit, test, record its hyperparameters and final metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from rnnlab import budget
from rnnlab.app.build import build, set_threads
from rnnlab.app.checkpoints import CheckpointsWritten, best_checkpoint_callback, checkpoint_paths
from rnnlab.app.launch import check_launch
from rnnlab.app.requeue import Requeued, requeued_run
from rnnlab.app.session import run_session
from rnnlab.app.validate import validate
from rnnlab.console import say
from rnnlab.errors import ConfigError, metric_not_logged, not_allowed
from rnnlab.models import RecurrentModel
from rnnlab.sweep.trial import is_trial, trial_callbacks


def train_command(cfg: DictConfig) -> float | tuple[float, ...]:
    """``src/train.py``: train (or resume) the run of ``cfg`` and return its optimised metric.

    A SLURM job that SLURM started again continues the run its earlier start began (``rnnlab.app.requeue``)."""
    from rnnlab.app.resume import resume_config

    requeued = requeued_run(Path(cfg.paths.output_dir)) if not cfg.get("ckpt_path") else None
    if requeued is not None and requeued.checkpoint is not None:
        say_requeued(cfg, requeued)
        cfg = resume_config(str(requeued.checkpoint), [])  # the run's own config: the same command, run again
    elif cfg.get("ckpt_path"):
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        cfg = resume_config(cfg.ckpt_path, overrides)
    elif requeued is not None:
        say_requeued(cfg, requeued)
    return optimized_value(cfg, train(cfg, restart=requeued is not None and requeued.checkpoint is None))


def say_requeued(cfg: DictConfig, requeued: Requeued) -> None:
    where = f"from {requeued.checkpoint}" if requeued.checkpoint else "from the start (it had no checkpoint yet)"
    line = f"SLURM job {requeued.job_id} started again (restart {requeued.restart}): continuing its run {where}"
    (logging.getLogger("rnnlab").info if is_trial(cfg) else say)(line)


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = (), restart: bool = False) -> dict[str, float]:
    """Fit, then test the best checkpoint (or the final weights: ``test_ckpt=last``).

    ``restart``: the run in the output directory was begun by this same SLURM job before SLURM requeued it,
    with no checkpoint to continue from: it trains again from the start, under the same record.

    Returns every final metric (val/*, test/*) as floats. The run's record (``run.json``) is written when
    it starts and completed with its fate when it ends, also in TensorBoard's HPARAMS session status
    (``rnnlab.app.session``).

    Under DDP every rank runs this: only rank 0 writes the run directory's files (config, vocabulary, logs,
    checkpoints, record), the ranks Lightning launches reuse rank 0's run directory, and every rank returns
    rank 0's metrics (synced across ranks when logged).
    """
    validate(cfg)
    budget.apply(cfg, keep_model=bool(cfg.get("ckpt_path")))  # RNNLAB_BUDGET=tiny: after validation
    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    with run_session(cfg, run_dir, "train", restart=restart) as session:
        # A sweep trial reports to its Optuna trial every validation epoch and can be pruned.
        callbacks = [*extra_callbacks, *trial_callbacks(cfg), *session.callbacks, CheckpointsWritten()]
        datamodule, model, trainer = build(cfg, callbacks, restart=restart)
        check_launch(trainer)
        check_optimized_metric(cfg, model)
        session.under_way(trainer, start_line(cfg, model, run_dir, session.resuming))
        session.save_run_files(datamodule, model.num_parameters)
        metrics = session.kept_validation_metrics()
        tested, checkpoints = fit_and_test(cfg, datamodule, model, trainer)
        metrics.update(tested)
        metrics["model/num_parameters"] = float(model.num_parameters)  # an objective of size-vs-accuracy sweeps
        summary = summary_line(cfg, model, metrics, run_dir)
        session.done(metrics, summary, checkpoints=checkpoints, epoch=trainer.current_epoch)
    return metrics


def check_optimized_metric(cfg: DictConfig, model: RecurrentModel) -> None:
    """The metric the best checkpoint and a sweeper follow must be one the model logs every validation."""
    name = cfg.get("optimized_metric")
    validated = [metric for metric in model.summary_metrics if metric.startswith("val/")]
    if OmegaConf.is_list(name):  # several objectives (a multi-objective sweep): the size may be one of them
        allowed = [*validated, "model/num_parameters"]
        for item in name:
            if item not in allowed:
                raise ConfigError(not_allowed("optimized_metric", item, allowed))
    elif name is not None and name not in validated:
        raise ConfigError(not_allowed("optimized_metric", name, validated))


def fit_and_test(
    cfg: DictConfig, datamodule, model: RecurrentModel, trainer: pl.Trainer
) -> tuple[dict[str, float], dict[str, str | None]]:
    """Fit (resuming from ``ckpt_path`` if set), test as ``test``/``test_ckpt`` say; rank 0's final metrics and
    the checkpoints the fit kept.

    The checkpoints are read before testing: testing a checkpoint restores every callback's state as it was when
    that checkpoint was saved, so with a best epoch 0 the last.ckpt callback would forget its file.
    """
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
    checkpoints = checkpoint_paths(trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    checkpoint = best_checkpoint_callback(trainer)
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if cfg.get("test", True):
        # ckpt_path None: the model as fit left it (its final weights)
        tested = best if cfg.get("test_ckpt", "best") == "best" else None
        # verbose=False: no table of float32 noise (0.9599999785423279); the summary line rounds them
        trainer.test(model, datamodule=datamodule, ckpt_path=tested, weights_only=False, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    for logger in trainer.loggers:
        logger.finalize("success")
    return trainer.strategy.broadcast(metrics, src=0), checkpoints  # one answer, whichever rank is asked


def start_line(cfg: DictConfig, model: RecurrentModel, run_dir: Path, resuming: bool) -> str:
    """What the run is about to do, in one line (the layer table is in train.log)."""
    verb = "resuming" if resuming else "training"
    return (
        f"{verb} {cfg.run_name} ({model.num_parameters:,} params) on {cfg.task_name} for {cfg.trainer.max_epochs} "
        f"epochs; run_dir={run_dir}"
    )


def summary_line(cfg: DictConfig, model: RecurrentModel, metrics: dict[str, float], run_dir: Path) -> str:
    shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.endswith("_best") or k.startswith("test/"))
    return f"{cfg.run_name} params={model.num_parameters:,} {shown} run_dir={run_dir}"


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | tuple[float, ...]:
    """The value of ``cfg.optimized_metric`` for a sweeper, a tuple when it is a list of metrics (a
    multi-objective sweep); a clear error if the run did not log one."""
    names = list(cfg.optimized_metric) if OmegaConf.is_list(cfg.optimized_metric) else [cfg.optimized_metric]
    for name in names:
        if name not in metrics:
            raise metric_not_logged(name, metrics)
    values = tuple(metrics[name] for name in names)
    return values if OmegaConf.is_list(cfg.optimized_metric) else values[0]
