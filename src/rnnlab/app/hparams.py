"""A run's row in TensorBoard's HPARAMS table: its settings, its main metrics, whether it completed.

TensorBoard (2.21) builds the table from every run's session: the hparams columns are the session's settings
(the ones that differ among the runs shown first, ``run_settings``), and the metric columns are every scalar
tag logged under the session's run, sorted by name, of which the dashboard ticks the first 5. A run's own
scalars (``epoch``, ``grad_norm/*``, ``train/*``...) would fill those 5. So the session lives in a sub-run of
the run's TensorBoard directory (``<run>/hparams``) that holds only the run's main metrics (``main_metrics``:
what it optimises, each one's test counterpart, its parameter count) and ``run/completed`` (1 when it
completed, 0 while running and when it was interrupted, failed or killed): what the table ticks.

The metrics are written at every validation and test (flushed at once, so a killed run keeps what it
reached), and the session's end status when the run ends. The session's group name (the table's "Trial ID")
is short and says which run it is (``trial_group_name``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

SESSION_RUN = "hparams"  # the sub-run of a run's TensorBoard directory that holds its HPARAMS session
COMPLETED = "run/completed"
PARAMETERS = "model/num_parameters"


def session_dir(log_dir: str | Path) -> Path:
    return Path(log_dir) / SESSION_RUN


def main_metrics(cfg: DictConfig) -> list[str]:
    """What a run optimises (``optimized_metric``, one or several), each validation one's test counterpart
    (``val/acc_best`` -> ``test/acc``, as ``rnnlab runs`` shows them), and the parameter count."""
    name = cfg.get("optimized_metric") or "val/loss"
    optimised = [str(m) for m in name] if OmegaConf.is_list(name) else [str(name)]
    tests = ["test/" + m.split("/", 1)[-1].removesuffix("_best") for m in optimised if m.startswith("val/")]
    return list(dict.fromkeys([*optimised, *tests, PARAMETERS]))


def group_name(cfg: DictConfig, run_dir: Path, record_id: str) -> str:
    """The table's "Trial ID": a sweep trial's study and number (``mnist1d-gru #3``), else the run's name; with
    the start of its record id, so that no two runs share a row."""
    trial = cfg.get("optuna_trial") or {}
    if trial.get("number") is not None:
        return f"{trial.get('study_name') or run_dir.parent.name} #{trial['number']} {record_id[:6]}"
    return f"{cfg.get('run_name') or run_dir.name} {record_id[:6]}"


class HParamsSession(pl.Callback):
    """Writes a run's HPARAMS session (rank 0 only: add it where the run keeps a record)."""

    def __init__(self, metrics: Sequence[str]) -> None:
        self.metrics = list(metrics)
        self.writers: dict[str, Any] = {}
        self.fitting = False  # a run stopped before its fit began (refused) leaves no session behind

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fitting = True

    def start(self, trainer: pl.Trainer, settings: Mapping[str, Any], name: str, parameters: int) -> None:
        """The session's start (its settings): once per run, not again when it is resumed."""
        for writer in self._writers(trainer):
            for summary in session_start_summaries(dict(settings), group_name=name):
                writer.add_summary(summary)
        self.write(trainer, {PARAMETERS: parameters, COMPLETED: 0})

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.write(trainer, {**trainer.callback_metrics, COMPLETED: 0})

    def finish(self, trainer: pl.Trainer, status: str, metrics: Mapping[str, Any]) -> None:
        """The metrics the run ended with, whether it completed, and the session's end status."""
        if not self.fitting:
            return
        self.write(trainer, {**metrics, COMPLETED: int(status == "completed")})
        for writer in self._writers(trainer):
            writer.add_summary(session_end_summary(SESSION_STATUS[status]))
            writer.close()
        self.writers.clear()

    def write(self, trainer: pl.Trainer, values: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import scalar

        shown = {k: float(v) for k, v in values.items() if k in (*self.metrics, COMPLETED) and v is not None}
        for writer in self._writers(trainer):
            for tag, value in shown.items():
                writer.add_summary(scalar(tag, value), trainer.global_step)
            writer.flush()

    def _writers(self, trainer: pl.Trainer) -> Iterable[Any]:
        from torch.utils.tensorboard.writer import FileWriter

        for log_dir in tensorboard_dirs(trainer):
            if log_dir not in self.writers:
                self.writers[log_dir] = FileWriter(str(session_dir(log_dir)))
            yield self.writers[log_dir]


def _plugin_summary(tag: str, **plugin_data: Any):
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = HParamsPluginData(version=PLUGIN_DATA_VERSION, **plugin_data)
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content.SerializeToString())
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


# HPARAMS session status by record status (a killed run writes none: TensorBoard shows it unknown).
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "interrupted": "STATUS_FAILURE"}


def session_end_summary(status: str):
    """The HPARAMS ``session_end_info`` summary for a record status."""
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

    return _plugin_summary(SESSION_END_INFO_TAG, session_end_info=SessionEndInfo(status=Status.Value(status)))


def session_start_summaries(params: dict[str, Any], group_name: str = "") -> list:
    """The HPARAMS session-start summary of a run: its settings (``run_settings``) as the session's hparams.

    No experiment summary: TensorBoard takes one run's experiment, arbitrarily, when runs write their own,
    and then sorts that run's columns by name (its ``differs`` flags unset), which opened the table on
    ``data/augment/*``. Without one, TensorBoard builds the experiment from every session: the settings
    that differ among the runs shown come first, and the metric columns are the scalars the runs logged.
    """
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams

    _experiment, session_start, _success = hparams(params, {})
    if group_name:  # the table's "Trial ID" (else the run's path)
        plugin_data = session_start.value[0].metadata.plugin_data
        data = HParamsPluginData.FromString(plugin_data.content)
        data.session_start_info.group_name = group_name
        plugin_data.content = data.SerializeToString()
    return [session_start]


def tensorboard_dirs(trainer: pl.Trainer) -> list[str]:
    from pytorch_lightning.loggers import TensorBoardLogger

    return [logger.log_dir for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def drop_empty_hparams_file(log_dir: str) -> None:
    """Lightning's TensorBoard logger leaves an empty ``hparams.yaml`` (rnnlab's hyperparameters are in the
    record and the HPARAMS summary); remove it rather than leave a file that says nothing."""
    path = Path(log_dir) / "hparams.yaml"
    if path.is_file() and path.read_text().strip() in ("", "{}"):
        path.unlink()
