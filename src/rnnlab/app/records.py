"""What a run leaves about itself: its record (``run.json``) and its session in TensorBoard's HPARAMS tab.

The record is started when the run starts (or continued when it is resumed) and finished with the run's
real fate: completed, failed (with the error's line) or interrupted (Ctrl-C, SIGTERM), with the epoch
reached. TensorBoard gets the same fate as the HPARAMS session status, written when the run ends, so a
crashed run is not shown as finished there.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import first_line
from rnnlab.runs.record import RECORD_FILE, RunRecord, current_command, flatten_params
from rnnlab.runs.settings import derived_keys, settings

SOURCE_ROOT = Path(__file__).resolve().parents[3]  # the checkout (or install) this code runs from

# Config sections that say where things go, not what the run is: left out of the record's params (tags
# and note are record fields of their own).
NOT_PARAMS = ("paths", "hydra", "logger", "callbacks", "optuna_trial", "parent", "tags", "note")


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that defines the run (model, data, trainer, seed, ...), for the record."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {key: value for key, value in resolved.items() if key not in NOT_PARAMS}


def run_derived(cfg: DictConfig) -> list[str]:
    """The params that copy another config key (``data.shuffle_seed: ${seed}``): recorded, not shown."""
    unresolved = OmegaConf.to_container(cfg, resolve=False)
    return derived_keys({key: value for key, value in unresolved.items() if key not in NOT_PARAMS})


def run_tags(cfg: DictConfig) -> list[str]:
    """``tags=[a,b]`` (or ``tags=a``) at launch, as a list of strings."""
    tags = cfg.get("tags")
    if tags is None:
        return []
    return [str(tag) for tag in tags] if OmegaConf.is_list(tags) else [str(tags)]


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """The curated settings of a run (``rnnlab.runs.settings``): its HPARAMS columns in TensorBoard, with
    its name, tags and note where given."""
    shown = settings(flatten_params(run_params(cfg)), run_derived(cfg), same_as=[cfg.get("run_name")])
    labels = {"tags": ",".join(run_tags(cfg)), "note": str(cfg.get("note") or "")}
    return {**shown, **{key: value for key, value in labels.items() if value}}


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
        derived=run_derived(cfg),
        parent=run_parent(cfg),
        tags=run_tags(cfg),
        note=cfg.get("note"),
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


class CheckpointsWritten(pl.Callback):
    """Stops a run whose checkpoints were not written, with the reason.

    Lightning drops a PermissionError of a checkpoint write (``lightning_fabric``'s ``_atomic_save`` re-raises
    only a cross-device one), so a run whose checkpoint folder became unwritable would train on without
    them. Each epoch (and at the end of fit) the files its checkpoint callbacks say they wrote must exist.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer)

    @staticmethod
    def check(trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:  # rank 0 writes the checkpoints
            return
        for callback in trainer.checkpoint_callbacks:  # any Checkpoint callback: the paths it reports, if any
            reported = {getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")}
            folder = getattr(callback, "dirpath", None)
            for path in reported - {"", None}:
                if folder and Path(path).parent != Path(folder):
                    continue  # restored from a checkpoint of a run that has moved since: not written by this run
                if not Path(path).is_file():
                    raise not_written(Path(path))


def not_written(path: Path) -> OSError:
    """The error for a checkpoint that is not there: why its folder takes no file, where that can be seen."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        return OSError(error.errno, f"checkpoint {path} was not written: {path.parent}: {error.strerror}")
    return OSError(errno.EIO, f"checkpoint {path} was not written")


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
