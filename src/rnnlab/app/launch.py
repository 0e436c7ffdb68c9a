"""DDP launch rules: which trainers re-run the command for their other ranks, and where that is refused."""

from __future__ import annotations

from typing import Any

from rnnlab.errors import ConfigError


def relaunches_command(trainer: Any) -> bool:
    """Whether Lightning starts the other ranks of this trainer by re-running the command (``strategy: ddp``
    on several devices of this machine), rather than SLURM/torchrun starting them or no other rank at all.

    The one adapter to a private Lightning API: Lightning has no public way to ask how a strategy starts its
    ranks, so this checks its launcher class (pytorch-lightning < 3 in pyproject); tests/test_scaling.py
    builds a ``ddp_sim`` trainer through it and fails loudly if Lightning renames or replaces the class.
    """
    from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and not launcher.cluster_environment.creates_processes_externally
    )


def check_launch(trainer: Any) -> None:
    """Refuse a command-relaunching DDP run inside a multirun (``-m``): Lightning would re-run the whole sweep
    command for every extra rank (Lightning-AI/pytorch-lightning#11300)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if relaunches_command(trainer) and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.strategy='ddp' with {trainer.world_size} processes cannot run in a "
            "multirun (-m): each sweep job uses one device (trainer=gpu; hydra.sweeper.trials_per_gpu), or run "
            "the DDP training on its own"
        )
