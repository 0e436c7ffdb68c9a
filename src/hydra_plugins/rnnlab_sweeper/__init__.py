"""rnnlab's Optuna sweeper for Hydra (``hydra/sweeper=rnnlab_optuna``); see ``optuna_sweeper``."""
