"""GPUs for the parallel trials of a sweep: a pure function of the visible device count."""

from __future__ import annotations


def gpu_slots(n_jobs: int, n_gpus: int, trials_per_gpu: int = 1) -> list[int]:
    """The GPU index of each trial run at once (the launcher's worker index -> GPU).

    At most ``trials_per_gpu`` trials share a GPU, so ``min(n_jobs, n_gpus * trials_per_gpu)`` trials run at
    once; they are spread round-robin (worker i -> GPU i mod n_gpus) so GPUs fill evenly before any is shared.
    No GPUs: no slots (the trials run on CPU).
    """
    if n_jobs < 1 or trials_per_gpu < 1 or n_gpus < 0:
        raise ValueError(f"n_jobs={n_jobs}, trials_per_gpu={trials_per_gpu} must be >= 1 and n_gpus={n_gpus} >= 0")
    return [worker % n_gpus for worker in range(min(n_jobs, n_gpus * trials_per_gpu))]
