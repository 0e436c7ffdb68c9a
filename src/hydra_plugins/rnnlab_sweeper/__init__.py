"""rnnlab's Optuna sweeper for Hydra (``hydra/sweeper=rnnlab_optuna``): ``optuna_sweeper`` runs a sweep,
``config`` is its schema, ``search_space``, ``study``, ``trials`` and ``progress`` are its parts."""
