"""Generate a continuation with a trained next-step model and compare it with the true series.

    python src/generate.py ckpt_path=<run dir>/checkpoints/last.ckpt steps=300
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("RNNLAB_ROOT", str(Path(__file__).resolve().parents[1]))

from rnnlab.config import register_resolvers, run_hydra_app  # noqa: E402  (light: no torch)

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> float:
    from rnnlab.training import generate_from_checkpoint

    return generate_from_checkpoint(cfg)


if __name__ == "__main__":
    run_hydra_app(main)
