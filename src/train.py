"""Train one model and return its optimised metric (for sweepers).

python src/train.py model=gru                       # conf/train.yaml composes the rest
python src/train.py ckpt_path=<run dir>/checkpoints/last.ckpt   # resume an interrupted run
"""

import hydra
from omegaconf import DictConfig

from rnnlab.app.setup import prepare_entry_point, run_command, run_hydra_app  # light: no torch yet

prepare_entry_point()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from rnnlab.app.train import train_command

    return run_command(train_command, cfg)


if __name__ == "__main__":
    run_hydra_app(main)
