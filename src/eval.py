"""Evaluate a checkpoint on the test split with the config it was trained with.

    python src/eval.py ckpt_path=<run dir>/checkpoints/best-epoch012.ckpt
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("RNNLAB_ROOT", str(Path(__file__).resolve().parents[1]))

from rnnlab.config import register_resolvers, run_hydra_app  # noqa: E402  (light: no torch)

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict:
    from rnnlab.training import evaluate

    return evaluate(cfg)


if __name__ == "__main__":
    run_hydra_app(main)
