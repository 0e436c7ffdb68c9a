"""Train one model and return its optimised metric (for sweepers).

python src/train.py model=gru                       # conf/train.yaml composes the rest
python src/train.py ckpt_path=<run dir>/checkpoints/last.ckpt   # resume an interrupted run
"""

import hydra
from omegaconf import DictConfig

from rnnlab.app.setup import prepare_entry_point, run_hydra_app  # light: no torch before Hydra composes

prepare_entry_point()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | tuple[float, ...]:
    from hydra.core.hydra_config import HydraConfig

    from rnnlab.app.resume import resume_config
    from rnnlab.app.train import optimized_value, train

    if cfg.ckpt_path:
        cfg = resume_config(cfg.ckpt_path, HydraConfig.get().overrides.task)
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    run_hydra_app(main)
