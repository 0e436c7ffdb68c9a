"""rnnlab's Optuna sweeper for Hydra (``hydra/sweeper=rnnlab_optuna``): ``optuna_sweeper`` sets a sweep up and
reports on it, ``trial_loop`` runs its trials, ``config`` is its schema; ``search_space``, ``samplers``,
``study``, ``placement``, ``trial_overrides``, ``trial_states`` and ``progress`` are its parts."""
