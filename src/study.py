"""Tune every cell with the same sweep budget, retrain each cell's best over seeds, report (make study).

python src/study.py                                       # vanilla, GRU, LSTM on MNIST-1D (conf/study.yaml)
python src/study.py study.cells=[gru,lstm] data=adding data.seq_len=50 study.trials=10
Rerun the same command to continue an interrupted study; docs/study.md.
"""

import hydra
from omegaconf import DictConfig

from rnnlab.app.setup import prepare_entry_point, run_command, run_hydra_app  # light: no torch yet

prepare_entry_point()


@hydra.main(version_base="1.3", config_path="../conf", config_name="study")
def main(cfg: DictConfig) -> None:
    from rnnlab.study import main as study

    run_command(study, cfg)


if __name__ == "__main__":
    run_hydra_app(main)
