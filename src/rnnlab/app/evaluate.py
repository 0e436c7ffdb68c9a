"""Testing a checkpoint with the config of the run that wrote it (``src/eval.py``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rnnlab.app.build import load_run, set_threads
from rnnlab.app.rundirs import load_run_config, run_dir_of_checkpoint
from rnnlab.app.session import run_session
from rnnlab.console import say


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint with the config of the run that wrote it (``<run dir>/config.yaml``)."""
    set_threads(cfg.get("threads"))
    datamodule, model, trainer = load_run(cfg.ckpt_path, cfg.paths.output_dir, cfg.get("trainer"), cfg.logger)
    run_cfg = load_run_config(run_dir_of_checkpoint(cfg.ckpt_path))
    with run_session(cfg, Path(cfg.paths.output_dir), "eval", of_run=run_cfg) as session:
        session.under_way()
        trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False, verbose=False)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        session.done(metrics)
    say("eval " + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())) + f" ckpt={cfg.ckpt_path}")
    return metrics
