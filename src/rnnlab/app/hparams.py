"""A run's session in TensorBoard's HPARAMS tab: its settings when it starts, its fate when it ends.

TensorBoard gets the run's fate as the HPARAMS session status, written when the run ends, so a crashed run is
not shown as finished there (a killed run writes none: TensorBoard shows it unknown).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


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


def session_start_summaries(params: dict[str, Any]) -> list:
    """The HPARAMS session-start summary of a run: its settings (``run_settings``) as the session's hparams.

    No experiment summary: TensorBoard takes one run's experiment, arbitrarily, when runs write their own,
    and then sorts that run's columns by name (its ``differs`` flags unset), which opened the table on
    ``data/augment/*``. Without one, TensorBoard builds the experiment from every session: the settings
    that differ among the runs shown come first, and the metric columns are the scalars the runs logged.
    """
    from torch.utils.tensorboard.summary import hparams

    _experiment, session_start, _success = hparams(params, {})
    return [session_start]


def write_summaries(log_dir: str | Path, summaries: Iterable) -> None:
    """Write summaries to an event file of their own in ``log_dir`` (TensorBoard reads every file of a run).

    Through torch's public ``FileWriter``, not the ``SummaryWriter`` of the run's logger, whose file writer
    is reachable only through a private method.
    """
    from torch.utils.tensorboard.writer import FileWriter

    writer = FileWriter(str(log_dir))
    for summary in summaries:
        writer.add_summary(summary)
    writer.close()


def tensorboard_dirs(trainer: pl.Trainer) -> list[str]:
    from pytorch_lightning.loggers import TensorBoardLogger

    return [logger.log_dir for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def drop_empty_hparams_file(log_dir: str) -> None:
    """Lightning's TensorBoard logger leaves an empty ``hparams.yaml`` (rnnlab's hyperparameters are in the
    record and the HPARAMS summary); remove it rather than leave a file that says nothing."""
    path = Path(log_dir) / "hparams.yaml"
    if path.is_file() and path.read_text().strip() in ("", "{}"):
        path.unlink()
