"""Generate a continuation with a trained next-step model and compare it with the true series.

python src/generate.py ckpt=<run dir>/checkpoints/last.ckpt length=300
python src/generate.py ckpt=<run dir>/checkpoints/last.ckpt prompt="The assert" temperature=0.8
"""

import hydra
from omegaconf import DictConfig

from rnnlab.app.setup import prepare_entry_point, run_command, run_hydra_app  # light: no torch yet

prepare_entry_point()


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> float:
    from rnnlab.app.generate import generate_from_checkpoint

    return run_command(generate_from_checkpoint, cfg)


if __name__ == "__main__":
    run_hydra_app(main)
