"""Resuming a run: the config it was started with, what this command may change, and proof that the
checkpoint can continue it — all before anything of the run is touched."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.app.rundirs import load_run_config, run_dir_of_checkpoint
from rnnlab.console import say
from rnnlab.errors import ConfigError, first_line
from rnnlab.runs.store import read_record

# Overrides that only say where this command's own outputs go; they are not the run's to compare.
COMMAND_ONLY = ("ckpt_path", "hydra.")


def run_choices(run_dir: Path) -> dict[str, Any]:
    """The config-group choices a run was started with (``model: gru``), from its Hydra record."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return {}
    try:
        choices = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices")
    except Exception:  # an unreadable Hydra record: compare against the run config alone
        return {}
    return dict(OmegaConf.to_container(choices)) if choices is not None else {}


def resume_config(ckpt_path: str, overrides: Iterable[str], announce: bool = True) -> DictConfig:
    """The config a run was started with, updated by this command's ``key=value`` overrides.

    A config group given again with the run's own choice (the original command plus ``ckpt_path=``) is
    accepted; a different one is refused naming both: the checkpoint holds that model's weights. The
    checkpoint must be readable, match the resulting model and have epochs left to train (or a test left to
    run: ``announce`` says so).
    """
    run_dir = run_dir_of_checkpoint(ckpt_path)
    cfg = load_run_config(run_dir)
    original = cfg.copy()
    choices = run_choices(run_dir)
    dotlist = []
    for override in overrides:
        deleted = override.startswith("~")
        key, _, value = override.lstrip("+~").partition("=")
        if key.startswith(COMMAND_ONLY):
            continue
        if key in choices or "/" in key or isinstance(OmegaConf.select(cfg, key), DictConfig):
            given = None if deleted else value
            started = choices.get(key)
            if (key in choices or deleted) and str(given) == str(started):
                continue  # the run's own group (or its absence): nothing changes
            was = f"{key}={started}" if started is not None else f"no {key}" if choices else f"its own {key}"
            raise ConfigError(f"{override!r} cannot change on resume; the run in {run_dir} was started with {was}")
        dotlist.append(f"{key}={value}")
    cfg.merge_with_dotlist(dotlist)
    cfg.ckpt_path = str(Path(ckpt_path).resolve())
    check_resumable(cfg, original, run_dir, announce)
    return cfg


def _changed(cfg: DictConfig, original: DictConfig, prefix: str) -> list[str]:
    """``key=new (the run has old)`` for every value under ``prefix`` that differs between the configs."""
    new, old = (_flat(_plain(OmegaConf.select(config, prefix)), prefix) for config in (cfg, original))
    return [
        f"{key}={new.get(key)} (the run has {old.get(key)})"
        for key in sorted(set(new) | set(old))
        if new.get(key) != old.get(key)
    ]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    flat = {}
    for key, value in node.items():
        flat.update(_flat(value, f"{prefix}.{key}"))
    return flat


def builds_model_of(cfg: DictConfig, state_dict: dict) -> bool:
    """Whether the model ``cfg`` builds (for its data's task) has exactly the weights of ``state_dict``."""
    from hydra.utils import instantiate

    model = instantiate(cfg.model, task=instantiate(cfg.data).task)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    return expected == {name: tuple(tensor.shape) for name, tensor in state_dict.items()}


def unfinished_fate(run_dir: Path) -> str | None:
    """How the run ended if its record says it did not complete (killed, interrupted, failed), else None."""
    try:
        status = read_record(run_dir).get("status")
    except FileNotFoundError:
        return None
    return status if status in ("killed", "interrupted", "failed") else None


def check_resumable(cfg: DictConfig, original: DictConfig, run_dir: Path, announce: bool = True) -> None:
    """Refuse, with one line, a resume that could not continue the run: an unreadable checkpoint, a model
    whose weights differ from the checkpoint's, a one-cycle schedule asked to change length, a completed run
    that has no epochs left. A run that trained all its epochs but ended before it completed (killed while
    testing) is finished: Lightning's fit has nothing left to train, the test runs."""
    import torch

    try:
        checkpoint = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)
        state = checkpoint["state_dict"]
    except Exception as error:
        raise ConfigError(f"ckpt_path={cfg.ckpt_path!r} is not a readable checkpoint ({first_line(error)})") from None

    if not builds_model_of(cfg, state):
        changes = _changed(cfg, original, "model") or ["the model"]
        raise ConfigError(
            f"{', '.join(changes)} does not match the checkpoint in {run_dir}; a resumed run keeps its model"
        )

    scheduler = OmegaConf.select(cfg, "model.scheduler._target_") or ""
    if scheduler.endswith(("one_cycle", "OneCycleLR")):  # rnnlab.models.one_cycle; torch's in older run configs
        budget = [c for c in _changed(cfg, original, "trainer") if "max_epochs" in c or "limit_train_batches" in c]
        budget += _changed(cfg, original, "data.batch_size")
        if budget:
            raise ConfigError(
                f"{', '.join(budget)} cannot change on resume of a one-cycle run: its learning-rate schedule "
                "was laid out for the original number of steps; start a new run (or one with ~model/scheduler)"
            )

    epochs_done = int(checkpoint.get("epoch", -1)) + 1
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and max_epochs > 0 and epochs_done >= max_epochs:
        ended = unfinished_fate(run_dir)
        if ended is not None:  # trained to the end, then killed or stopped before its test and record were done
            what = "its test" if cfg.get("test", True) else "its record"
            if announce:
                say(f"the run in {run_dir} trained all {epochs_done} epochs before it was {ended}; finishing {what}")
            return
        raise ConfigError(
            f"trainer.max_epochs={max_epochs} is already reached by the run in {run_dir} ({epochs_done} epochs "
            f"done); give trainer.max_epochs > {epochs_done} to train it further"
        )
