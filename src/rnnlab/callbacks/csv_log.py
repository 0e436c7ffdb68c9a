"""Lightning's CSV logger, continued by a resumed run instead of started again (conf/logger/csv.yaml)."""

from __future__ import annotations

import csv

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _ContinuedWriter(ExperimentWriter):
    """Appends to the ``metrics.csv`` it finds (a resumed run's rows of the epochs before the interruption):
    Lightning's writer deletes that file, and warns about any run directory that holds other files."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):  # its header: new rows follow it (new keys rewrite it)
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` whose ``metrics.csv`` keeps every row across resumes."""

    _experiment: ExperimentWriter | None  # set by CSVLogger's constructor, made on first use

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment
