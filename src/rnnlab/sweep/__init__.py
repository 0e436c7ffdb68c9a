"""The rnnlab side of Optuna sweeps (the sweeper plugin itself is ``hydra_plugins.rnnlab_sweeper``).

``storage`` (opening an RDB storage, one-line refusals), ``results`` (ranked trials or the Pareto front, the
table, ``best.yaml``, ``optimization_results.yaml``, the Pareto plot) and ``workers`` (which sweep process runs
a trial, and whether it is alive) are light: the sweep's parent process imports them without torch.
``trial`` (a training run reporting to its trial, pruning), ``cores`` (core sharing among running trials)
and ``gpus`` (GPU slots) are used by trial jobs.

May import ``errors``, ``devices`` and (trial side) Lightning; never ``app`` or ``report``.
"""
