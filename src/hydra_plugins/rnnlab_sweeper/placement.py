"""Where a sweep's trials run: how many at once, which GPU each parallel slot gets, each one's share of the cores.

Only launchers that run trials on this machine share its GPUs and cores among them; the others (SLURM, ...)
get theirs from the cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from rnnlab.console import say

# Launchers that run trials on this machine, by Hydra ``_target_``: whether they run several at once (the basic
# launcher runs each trial in the sweep's own process, one at a time).
LOCAL_LAUNCHERS = {
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher": False,
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": True,
}


@dataclass(frozen=True)
class Placement:
    parallel: int  # trials run at once
    overrides: list[str]  # for every trial (a GPU sweep on a machine without GPUs: CPU)
    gpus: list[int | None]  # the visible GPU of each parallel slot (None: the trial's own trainer config)
    core_share: int | None  # torch threads for each trial running at once on this machine; None: not local

    def devices(self, slot: int) -> list[str]:
        """The overrides giving slot ``slot``'s trial its GPU."""
        gpu = self.gpus[slot]
        return [] if gpu is None else [f"trainer.devices=[{gpu}]"]


def plan(config: DictConfig, n_jobs: int | None, trials_per_gpu: int) -> Placement:
    """The placement of a sweep with the app's ``config`` (its ``hydra.launcher``, ``trainer.accelerator``)."""
    from rnnlab.devices import cpu_share

    target = str(config.hydra.launcher.get("_target_", ""))
    local = target in LOCAL_LAUNCHERS
    parallel = parallel_jobs(config, n_jobs)
    parallel, overrides, gpus = gpu_plan(config, parallel, trials_per_gpu, local)
    return Placement(parallel, overrides, gpus, cpu_share(parallel) if local else None)


def parallel_jobs(config: DictConfig, n_jobs: int | None) -> int:
    """How many trials run at once: ``n_jobs``, else the launcher's (joblib's n_jobs, SLURM's
    array_parallelism); the basic launcher runs one at a time (it runs trials in this process)."""
    from rnnlab.devices import cpu_share

    launcher = config.hydra.launcher
    if LOCAL_LAUNCHERS.get(str(launcher.get("_target_", ""))) is False:
        return 1
    jobs = n_jobs or int(launcher.get("n_jobs") or launcher.get("array_parallelism") or 1)
    return cpu_share(1) if jobs < 0 else jobs  # joblib: -1 = one job per core


def gpu_plan(
    config: DictConfig, parallel: int, trials_per_gpu: int, local: bool
) -> tuple[int, list[str], list[int | None]]:
    """(trials run at once, overrides for every trial, the GPU index of each parallel trial or None).

    Only for GPU trials (trainer.accelerator gpu/cuda) on a launcher of this machine: each parallel trial
    gets its own visible GPU (``gpu_slots``); without any GPU the trials fall back to CPU, with a notice.
    """
    from rnnlab.devices import GPU_ACCELERATORS, cuda_device_count
    from rnnlab.sweep.gpus import gpu_slots

    accelerator = str(OmegaConf.select(config, "trainer.accelerator", default="auto"))
    if accelerator not in GPU_ACCELERATORS or not local:
        return parallel, [], [None] * parallel
    count = cuda_device_count()
    if count == 0:
        say(
            f"no GPU visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): "
            "trials run on CPU (trainer.accelerator=cpu)"
        )
        return parallel, ["trainer.accelerator=cpu", "trainer.devices=1"], [None] * parallel
    slots = gpu_slots(parallel, count, trials_per_gpu)
    return len(slots), [], list(slots)
