"""Fit, test and evaluate from a composed Hydra config (the work behind ``src/train.py`` and ``src/eval.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from rnnlab.config import RUN_CONFIG, ConfigError, run_dir_of_checkpoint, validate
from rnnlab.devices import check_launch, check_trainer
from rnnlab.models import RecurrentModel
from rnnlab.pruning import trial_callbacks

VOCABULARY = "vocab.json"  # a text run's vocabulary, beside its config and checkpoints


def set_threads(num_threads: int | None) -> int:
    """Pin torch's intra-op threads: all cores this process may use unless told otherwise.

    Parallel sweep trials pass a share of the cores so they do not oversubscribe the machine.
    """
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(num_threads)
    return num_threads


def instantiate_all(section: DictConfig | None, **kwargs) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a config section (callbacks, loggers); skip nulls."""
    if not section:
        return []
    return [instantiate(conf, **kwargs) for conf in section.values() if conf is not None and "_target_" in conf]


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


def _global_step_of(ckpt_path: str) -> int:
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return int(checkpoint.get("global_step", 0))


def build(cfg: DictConfig, extra_callbacks: list[pl.Callback] = ()):
    """Datamodule, model and trainer for a run config (nothing is trained)."""
    datamodule = instantiate(cfg.data)
    model: RecurrentModel = instantiate(cfg.model, task=datamodule.task)
    logger_cfg = cfg.get("logger")
    if cfg.get("ckpt_path") and logger_cfg:
        # TensorBoard drops events at or after this step from the interrupted session: no duplicated steps.
        logger_cfg = OmegaConf.merge(
            logger_cfg,
            {
                key: {"purge_step": _global_step_of(cfg.ckpt_path)}
                for key, conf in logger_cfg.items()
                if conf is not None and conf._target_.endswith("TensorBoardLogger")
            },
        )
    loggers = instantiate_all(logger_cfg)
    callbacks = instantiate_all(cfg.get("callbacks")) + list(extra_callbacks)
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress bar callback then
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


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
        raise ConfigError(f"optimized_metric={name!r} was not logged; logged: {', '.join(sorted(metrics))}")
    return metrics[name]


def load_run(ckpt_path: str, output_dir: str, trainer_overrides: DictConfig | None = None, logger=None):
    """Datamodule, trained model and trainer of the run that wrote ``ckpt_path`` (its ``config.yaml``), on one
    device (a GPU run on a machine without one: ``trainer.accelerator=cpu``)."""
    run_cfg = OmegaConf.load(run_dir_of_checkpoint(ckpt_path) / RUN_CONFIG)
    # One process on one device, whatever the run trained on (DDP would re-run this command per rank).
    run_cfg.trainer = OmegaConf.merge(run_cfg.trainer, {"devices": 1, "strategy": "auto"}, trainer_overrides or {})
    check_trainer(run_cfg.trainer)
    run_cfg.logger, run_cfg.callbacks, run_cfg.ckpt_path = logger, None, None
    run_cfg.paths.output_dir = output_dir
    datamodule, model, trainer = build(run_cfg)
    return datamodule, model, trainer


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint with the config of the run that wrote it (``<run dir>/config.yaml``)."""
    set_threads(cfg.get("threads"))
    datamodule, model, trainer = load_run(cfg.ckpt_path, cfg.paths.output_dir, cfg.get("trainer"), cfg.logger)
    trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    print("[rnnlab] eval " + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())) + f" ckpt={cfg.ckpt_path}")
    return metrics


def generate_from_checkpoint(cfg: DictConfig) -> str | float:
    """Generate ``cfg.length`` steps with the model of ``cfg.ckpt``; outputs go to ``cfg.paths.output_dir``.

    Text: the prompt's continuation, sampled, printed and saved as sample.txt (returned).
    Series: a continuation of the first ``seed_len`` points of a split's series, saved as generation.png
    and generation.npz (seed, generated, true); returns its MSE against the true continuation.
    """
    from rnnlab.generation import check_generative

    set_threads(cfg.get("threads"))
    datamodule, model, _ = load_run(cfg.ckpt, cfg.paths.output_dir)
    checkpoint = torch.load(cfg.ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    check_generative(model)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model.task.kind == "language_model":
        return _sample_text_to(out, model, run_dir_of_checkpoint(cfg.ckpt), cfg)
    return _continue_series_to(out, model, datamodule, cfg)


def _sample_text_to(out: Path, model: RecurrentModel, run_dir: Path, cfg: DictConfig) -> str:
    from rnnlab.generation import sample_text
    from rnnlab.text import Vocabulary

    vocabulary = Vocabulary.load(run_dir / VOCABULARY)  # the run's own, whatever the corpus is now
    text = sample_text(model, vocabulary, cfg.prompt, cfg.length, cfg.temperature, cfg.top_k, cfg.seed)
    (out / "sample.txt").write_text(text, encoding="utf-8")
    print(text)
    print(f"[rnnlab] generate length={cfg.length} temperature={cfg.temperature} top_k={cfg.top_k} out={out}")
    return text


def _continue_series_to(out: Path, model: RecurrentModel, datamodule, cfg: DictConfig) -> float:
    import numpy as np

    from rnnlab.figures import series_figure
    from rnnlab.generation import generate

    seed, truth = datamodule.continuation(cfg.split, cfg.seed_len, cfg.length)
    generated = generate(model, seed, cfg.length)
    mse = float(((generated - truth) ** 2).mean())
    np.savez(out / "generation.npz", seed=seed.numpy(), generated=generated.numpy(), true=truth.numpy())
    figure = series_figure(
        f"{cfg.length} steps generated after {cfg.seed_len} seed steps ({cfg.split})",
        true=torch.cat([seed, truth], 1),
        generated=torch.cat([seed, generated], 1),
    )
    figure.savefig(out / "generation.png", dpi=120)
    print(f"[rnnlab] generate length={cfg.length} mse={mse:.4f} mse_ratio={mse / model.task.trivial_mse:.4f} out={out}")
    return mse
