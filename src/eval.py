"""Evaluate a checkpoint on the test split with the config it was trained with.

python src/eval.py ckpt_path=<run dir>/checkpoints/best-epoch012.ckpt
"""

import hydra
from omegaconf import DictConfig

from rnnlab.app.setup import prepare_entry_point, run_command, run_hydra_app  # light: no torch yet

prepare_entry_point()


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict:
    from rnnlab.app.evaluate import evaluate

    return run_command(evaluate, cfg)


if __name__ == "__main__":
    run_hydra_app(main)
