"""What a run leaves about itself: its record (``run.json``) and its session in TensorBoard's HPARAMS tab.

The record is started when the run starts (or continued when it is resumed) and finished with the run's
real fate: completed, failed (with the error's line) or interrupted (Ctrl-C, SIGTERM), with the epoch
reached. TensorBoard gets the same fate as the HPARAMS session status, written when the run ends, so a
crashed run is not shown as finished there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import first_line
from rnnlab.runs.record import RECORD_FILE, RunRecord, current_command

SOURCE_ROOT = Path(__file__).resolve().parents[3]  # the checkout (or install) this code runs from

# Config sections that say where things go, not what the run is: left out of the record's params.
NOT_PARAMS = ("paths", "hydra", "logger", "callbacks", "optuna_trial", "parent")


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that defines the run (model, data, trainer, seed, ...), for the record."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {key: value for key, value in resolved.items() if key not in NOT_PARAMS}


def command_overrides() -> list[str]:
    """This command's Hydra overrides (empty when the config was composed in Python)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _hydra_value(path: str) -> Any:
    from hydra.core.hydra_config import HydraConfig

    return OmegaConf.select(HydraConfig.get(), path) if HydraConfig.initialized() else None


def run_parent(cfg: DictConfig) -> dict[str, Any] | None:
    """The sweep, comparison or study a run belongs to: ``parent`` in the config (set by a command that
    launches runs, e.g. the study), else the Optuna trial it is, else the multirun it is a job of."""
    if cfg.get("parent"):
        return OmegaConf.to_container(cfg.parent, resolve=True)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep_dir = _hydra_value("sweep.dir")
    trial = cfg.get("optuna_trial")
    if trial and trial.get("number") is not None:
        return {"kind": "sweep", "dir": sweep_dir, "study": trial.study_name, "trial": int(trial.number)}
    return {"kind": "compare" if cfg.get("compare") else "multirun", "dir": sweep_dir}


def is_debug(cfg: DictConfig) -> bool:
    """Whether a ``debug=...`` config made this run (listed by ``rnnlab runs`` only on request)."""
    return _hydra_value("runtime.choices.debug") is not None


def start_record(cfg: DictConfig, run_dir: Path, kind: str, of_run: DictConfig | None = None) -> RunRecord:
    """Start the record of a new run, or continue the record of the run ``ckpt_path`` resumes.

    ``of_run``: for eval and generate outputs, the config of the run whose checkpoint they use.
    """
    if kind == "train" and cfg.get("ckpt_path") and (run_dir / RECORD_FILE).is_file():
        return RunRecord.resume(run_dir, command=current_command(), overrides=command_overrides())
    source = of_run if of_run is not None else cfg
    return RunRecord.start(
        run_dir,
        kind=kind,
        name=str(source.get("run_name") or kind) + ("" if kind == "train" else f"-{kind}"),
        task=str(source.get("task_name") or _hydra_value("runtime.choices.data") or ""),
        command=current_command(),
        overrides=command_overrides(),
        params=run_params(cfg),
        parent=run_parent(cfg),
        debug=is_debug(cfg),
        cwd=SOURCE_ROOT,  # git describes the code that ran, wherever its outputs go
    )


def fate(error: BaseException) -> tuple[str, str | None]:
    """(status, error line) of a run that ended with ``error``: Ctrl-C and SIGTERM interrupt, the rest fail."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    if isinstance(error, (KeyboardInterrupt, SIGTERMException)):
        return "interrupted", None
    return "failed", first_line(error)


class RecordProgress(pl.Callback):
    """Keeps the record's ``epoch`` and validation metrics current and remembers the exception that stopped training.

    Lightning turns Ctrl-C during ``fit`` into ``SystemExit(1)``; the exception it hands to ``on_exception``
    is the real one (KeyboardInterrupt, SIGTERMException or the error), so the record can say which.
    """

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.exception: BaseException | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Epochs done, and the validation metrics they reached: what a resume of a run killed before its
        # test reports (its checkpoint holds the weights, not the metrics).
        validated = {name: value for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
        self.record.update(epoch=trainer.current_epoch + 1, metrics=validated)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.exception = exception


# ------------------------------------------------------------------------------------------- TensorBoard


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


def session_start_summaries(params: dict[str, Any], metric_names: Iterable[str]) -> list:
    """The HPARAMS experiment (declaring ``metric_names`` as columns) and session-start summaries."""
    from torch.utils.tensorboard.summary import hparams

    experiment, session_start, _success = hparams(params, dict.fromkeys(metric_names, float("nan")))
    return [experiment, session_start]


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
