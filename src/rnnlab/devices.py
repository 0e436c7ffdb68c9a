"""Devices: trainer checks (accelerator, precision), DDP launch rules, GPUs for parallel sweep trials.

Nothing here needs a GPU to be tested: the checks read what torch/Lightning report, and the sweep
assignment is a pure function of the visible device count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from rnnlab.config import ConfigError, _one_of

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
GPU_ACCELERATORS = ("gpu", "cuda")


def gpu_available(accelerator: str = "gpu") -> bool:
    """Whether Lightning finds a GPU for ``accelerator`` (``gpu``: CUDA or Apple MPS; ``cuda``: CUDA only)."""
    from lightning_fabric.accelerators import CUDAAccelerator, MPSAccelerator

    return CUDAAccelerator.is_available() or (accelerator == "gpu" and MPSAccelerator.is_available())


def check_trainer(trainer: DictConfig) -> None:
    """One-line errors for a trainer config that Lightning would reject with a traceback (or worse, later)."""
    _one_of("trainer.precision", str(trainer.get("precision", 32)), PRECISIONS)
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in GPU_ACCELERATORS and not gpu_available(accelerator):
        import torch

        raise ConfigError(
            f"trainer.accelerator={accelerator!r} needs a GPU, and none is visible here (torch {torch.__version__}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
            "use trainer=cpu, trainer=default (any device) or trainer=ddp_sim"
        )


# ------------------------------------------------------------------------------------------- DDP


def relaunches_command(trainer: Any) -> bool:
    """Whether Lightning starts the other ranks of this trainer by re-running the command (``strategy: ddp``
    on several devices of this machine), rather than SLURM/torchrun starting them or no other rank at all."""
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


# ------------------------------------------------------------------------------------------- sweeps


def visible_gpu_names(environ: Mapping[str, str], count: int) -> list[str]:
    """The ``count`` GPUs CUDA shows this process, named as the machine numbers them: the first ``count``
    entries of ``CUDA_VISIBLE_DEVICES`` when it is set, else ``0 .. count-1``. Trial ``devices=[i]`` is
    torch's index i into this list."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in listed.split(",")] if listed is not None else []
    return [names[i] if i < len(names) else str(i) for i in range(count)]


def gpu_slots(n_jobs: int, n_gpus: int, trials_per_gpu: int = 1) -> list[int]:
    """The GPU index of each trial run at once (the launcher's worker index -> GPU).

    At most ``trials_per_gpu`` trials share a GPU, so ``min(n_jobs, n_gpus * trials_per_gpu)`` trials run at
    once; they are spread round-robin (worker i -> GPU i mod n_gpus) so GPUs fill evenly before any is shared.
    No GPUs: no slots (the trials run on CPU).
    """
    if n_jobs < 1 or trials_per_gpu < 1 or n_gpus < 0:
        raise ValueError(f"n_jobs={n_jobs}, trials_per_gpu={trials_per_gpu} must be >= 1 and n_gpus={n_gpus} >= 0")
    return [worker % n_gpus for worker in range(min(n_jobs, n_gpus * trials_per_gpu))]


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count()
