"""The cores and GPUs this process may use: a leaf (imports nothing of rnnlab, torch only when asked).

Nothing here needs a GPU to be tested: the answers are what the OS, torch and Lightning report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

GPU_ACCELERATORS = ("gpu", "cuda")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count; at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_share(n_parallel_jobs: int) -> int:
    """torch threads for one of ``n_parallel_jobs`` jobs running at once on this machine (at least 1)."""
    return max(1, available_cores() // max(1, n_parallel_jobs))


def gpu_available(accelerator: str = "gpu") -> bool:
    """Whether Lightning finds a GPU for ``accelerator`` (``gpu``: CUDA or Apple MPS; ``cuda``: CUDA only)."""
    from lightning_fabric.accelerators import CUDAAccelerator, MPSAccelerator

    return CUDAAccelerator.is_available() or (accelerator == "gpu" and MPSAccelerator.is_available())


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count()


def visible_gpu_names(environ: Mapping[str, str], count: int) -> list[str]:
    """The ``count`` GPUs CUDA shows this process, named as the machine numbers them: the first ``count``
    entries of ``CUDA_VISIBLE_DEVICES`` when it is set, else ``0 .. count-1``. Trial ``devices=[i]`` is
    torch's index i into this list."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in listed.split(",")] if listed is not None else []
    return [names[i] if i < len(names) else str(i) for i in range(count)]
