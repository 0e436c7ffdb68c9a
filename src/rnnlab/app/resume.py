"""Resuming a run: the config it was started with, and what this command may change."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.app.rundirs import load_run_config, run_dir_of_checkpoint
from rnnlab.errors import ConfigError


def resume_config(ckpt_path: str, overrides: Iterable[str]) -> DictConfig:
    """The config a run was started with, updated by this command's ``key=value`` overrides.

    Config groups (``model=gru``) cannot change on resume: the checkpoint holds that model's weights.
    """
    run_dir = run_dir_of_checkpoint(ckpt_path)
    cfg = load_run_config(run_dir)
    dotlist = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "ckpt_path":
            continue
        if isinstance(OmegaConf.select(cfg, key), DictConfig):
            raise ConfigError(f"{override!r} cannot change on resume; the run in {run_dir} was started with {key}")
        dotlist.append(f"{key}={value}")
    cfg.merge_with_dotlist(dotlist)
    cfg.ckpt_path = str(Path(ckpt_path).resolve())
    return cfg
