"""Training one run from a composed config: fit, test, record its hyperparameters and final metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from rnnlab import budget
from rnnlab.app.build import build, set_threads
from rnnlab.app.hparams import HParamsSession, group_name, main_metrics
from rnnlab.app.launch import check_launch
from rnnlab.app.records import (
    CheckpointsWritten,
    RecordProgress,
    fate,
    run_settings,
    start_record,
    tensorboard_dirs,
)
from rnnlab.app.rundirs import RUN_CONFIG, VOCABULARY, forget_reserved
from rnnlab.app.validate import validate
from rnnlab.console import say
from rnnlab.errors import ConfigError, Terminated, disk_full, first_line, metric_not_logged, not_allowed
from rnnlab.models import RecurrentModel
from rnnlab.sweep.trial import is_trial, trial_callbacks


def _checkpoint_callback(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The callback keeping the best checkpoint (the one with a monitored metric; last.ckpt's has none)."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)


def train_command(cfg: DictConfig) -> float | tuple[float, ...]:
    """``src/train.py``: train (or resume) the run of ``cfg`` and return its optimised metric."""
    if cfg.get("ckpt_path"):
        from hydra.core.hydra_config import HydraConfig

        from rnnlab.app.resume import resume_config

        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        cfg = resume_config(cfg.ckpt_path, overrides)
    return optimized_value(cfg, train(cfg))


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, float]:
    """Fit, then test the best checkpoint (or the final weights: ``test_ckpt=last``).

    Returns every final metric (val/*, test/*) as floats. The run's record (``run.json``) is written when
    it starts and completed with its fate when it ends, also in TensorBoard's HPARAMS session status.

    Under DDP every rank runs this: only rank 0 writes the run directory's files (config, vocabulary, logs,
    checkpoints, record), the ranks Lightning launches reuse rank 0's run directory, and every rank returns
    rank 0's metrics (synced across ranks when logged).
    """
    validate(cfg)
    budget.apply(cfg, keep_model=bool(cfg.get("ckpt_path")))  # RNNLAB_BUDGET=tiny: after validation
    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    resuming = bool(cfg.get("ckpt_path"))
    record = start_record(cfg, run_dir, "train") if rank_zero_only.rank == 0 else None
    # A sweep trial's own lines go to its train.log: the sweep's console is its [sweep] lines.
    tell = logging.getLogger("rnnlab").info if is_trial(cfg) else say
    progress = RecordProgress(record) if record else None
    session = HParamsSession(main_metrics(cfg)) if record else None  # the run's row in TensorBoard's HPARAMS
    trainer = None
    try:
        # A sweep trial reports to its Optuna trial every validation epoch and can be pruned.
        own = [progress, session] if progress and session else []
        callbacks = [*extra_callbacks, *trial_callbacks(cfg), *own, CheckpointsWritten()]
        datamodule, model, trainer = build(cfg, callbacks)
        check_launch(trainer)
        check_optimized_metric(cfg, model)
        forget_reserved()  # the run is under way: its directory stays, whatever happens now
        if record is not None:
            tell(start_line(cfg, model, run_dir, resuming))
            record.update(devices=[str(trainer.strategy.root_device)] * trainer.num_devices)
            if not resuming:  # a resumed run keeps the config and vocabulary it was made with
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / RUN_CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))
                vocabulary = getattr(datamodule, "vocabulary", None)
                if vocabulary is not None:  # text: sampling and evaluation must use the training vocabulary
                    vocabulary.save(run_dir / VOCABULARY)
                if session is not None:
                    name = group_name(cfg, run_dir, record.id)
                    session.start(trainer, run_settings(cfg), name, model.num_parameters)
        earlier = dict(record.data["metrics"]) if record is not None and resuming else {}
        # A resume that had no epoch left to train (a run killed while testing) validates nothing: the
        # validation metrics are those the record kept from its last epoch.
        metrics = {k: v for k, v in earlier.items() if k.startswith("val/") and v is not None}
        tested, checkpoints = fit_and_test(cfg, datamodule, model, trainer)
        metrics.update(tested)
        metrics["model/num_parameters"] = float(model.num_parameters)  # an objective of size-vs-accuracy sweeps
    except BaseException as error:
        if record is not None:
            status, line = fate((progress.exception if progress else None) or error)
            try:
                # epoch: the epochs done, as RecordProgress kept it; what the run reached and kept so far
                kept, reached = reached_so_far(trainer)
                record.finish(status, error=line, checkpoints=kept, metrics=reached)
            except OSError as write_error:  # a full disk: what stopped the run is still the error to report
                error.add_note(f"its record {record.path} could not be written ({first_line(write_error)})")
            # on a full disk, no room for TensorBoard's: the record has it
            if trainer is not None and session is not None and not disk_full(error):
                with contextlib.suppress(OSError):
                    session.finish(trainer, status, record.data["metrics"])
            last = run_dir / "checkpoints" / "last.ckpt"
            if status == "interrupted" and last.is_file():  # sweep trials keep no last.ckpt: the sweep reruns them
                say(
                    f"interrupted after {record.data['epoch'] or 0} epochs; continue with: "
                    f"python src/train.py ckpt_path={last}"
                )
        if isinstance(error, SystemExit) and not error.code:  # Lightning's SIGTERMException exits with 0
            raise Terminated("SIGTERM in fit") from None  # exit code 143 with its line (rnnlab.app.setup)
        raise
    if record is not None:
        record.finish("completed", metrics=metrics, checkpoints=checkpoints, epoch=trainer.current_epoch)
        if session is not None:
            session.finish(trainer, "completed", metrics)
        for log_dir in tensorboard_dirs(trainer):
            drop_empty_hparams_file(log_dir)
        tell(summary_line(cfg, model, metrics, run_dir))
    # Lightning leaves a DDP process group alive; a gloo group still alive when the interpreter exits can
    # abort the finished process ("terminate called without an active exception", exit code -6).
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        trainer.strategy.barrier("rnnlab-teardown")
        torch.distributed.destroy_process_group()
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
    checkpoint = _checkpoint_callback(trainer)
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


def checkpoint_paths(trainer: pl.Trainer) -> dict[str, str | None]:
    """The run's best and last checkpoints (None where the run keeps none)."""
    paths: dict[str, str | None] = {"best": None, "last": None}
    for callback in trainer.checkpoint_callbacks:
        if not callback.best_model_path:
            continue
        # conf/callbacks/model_checkpoint.yaml: one callback keeps the best epoch (by the monitored metric),
        # one with no metric keeps the latest (last.ckpt)
        paths["best" if callback.monitor else "last"] = callback.best_model_path
    return paths


def reached_so_far(trainer: pl.Trainer | None) -> tuple[dict[str, str | None], dict[str, float]]:
    """What an unfinished run has to show: the checkpoints on disk and its last validation metrics."""
    if trainer is None:
        return {}, {}
    kept: dict[str, str | None] = {k: v for k, v in checkpoint_paths(trainer).items() if v and Path(v).is_file()}
    validated = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return kept, validated


def drop_empty_hparams_file(log_dir: str) -> None:
    """Lightning's TensorBoard logger leaves an empty ``hparams.yaml`` (rnnlab's hyperparameters are in the
    record and the HPARAMS summary); remove it rather than leave a file that says nothing."""
    path = Path(log_dir) / "hparams.yaml"
    if path.is_file() and path.read_text().strip() in ("", "{}"):
        path.unlink()


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
