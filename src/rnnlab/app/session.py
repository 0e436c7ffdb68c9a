"""The run session: the bookkeeping around a run's work, shared by ``train``, ``eval`` and ``generate``.

``run_session`` starts the run's record (``run.json``), or continues it when a run is resumed, and finishes it
with the run's real fate: completed, failed (with the error's line) or interrupted (Ctrl-C, SIGTERM), with
the epoch reached. For training it also writes the run's config and vocabulary, its HPARAMS session in
TensorBoard (``rnnlab.app.hparams``) with the same fate, the resume hint of an interrupted run and the
DDP teardown; the command's body is left to say what the run does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from rnnlab import budget
from rnnlab.app.checkpoints import checkpoint_paths
from rnnlab.app.hparams import HParamsSession, drop_empty_hparams_file, group_name, main_metrics, tensorboard_dirs
from rnnlab.app.rundirs import RUN_CONFIG, VOCABULARY, forget_reserved
from rnnlab.console import say
from rnnlab.errors import Terminated, disk_full, first_line
from rnnlab.runs.environment import current_command
from rnnlab.runs.record import RunRecord, fate
from rnnlab.runs.settings import derived_keys, settings
from rnnlab.runs.signals import ctrl_c_received
from rnnlab.runs.store import RECORD_FILE, flatten_params
from rnnlab.sweep.trial import is_trial

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


def start_record(
    cfg: DictConfig, run_dir: Path, kind: str, of_run: DictConfig | None = None, restart: bool = False
) -> RunRecord:
    """Start the record of a new run, or continue the record of the run ``ckpt_path`` resumes (or that a
    requeued SLURM job trains again from its start: ``restart``).

    ``of_run``: for eval and generate outputs, the config of the run whose checkpoint they use.
    """
    if kind == "train" and (cfg.get("ckpt_path") or restart) and (run_dir / RECORD_FILE).is_file():
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
        env=budget.environment(),
        cwd=SOURCE_ROOT,  # git describes the code that ran, wherever its outputs go
    )


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

    # A Ctrl-C whose KeyboardInterrupt Python swallowed (raised in a finalizer) stops the run at the next batch.
    def on_train_batch_end(self, *args: Any) -> None:
        _stop_if_ctrl_c()

    def on_validation_batch_end(self, *args: Any) -> None:
        _stop_if_ctrl_c()

    def on_test_batch_end(self, *args: Any) -> None:
        _stop_if_ctrl_c()


def _stop_if_ctrl_c() -> None:
    if ctrl_c_received():
        raise KeyboardInterrupt("Ctrl-C (raised again: the first was lost)")


class RunSession:
    """One run's bookkeeping while its command's body runs (``run_session``): the record, and what the body
    tells it: that the run is under way, its files (training), its outcome.

    Under DDP every rank has one; only rank 0 keeps a record (``record`` is None on the others)."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, kind: str, of_run: DictConfig | None, restart: bool = False
    ) -> None:
        self.cfg, self.run_dir, self.kind = cfg, run_dir, kind
        self.resuming = kind == "train" and bool(cfg.get("ckpt_path"))
        self.record = start_record(cfg, run_dir, kind, of_run, restart) if rank_zero_only.rank == 0 else None
        self.progress = RecordProgress(self.record) if self.record is not None and kind == "train" else None
        # the run's row in TensorBoard's HPARAMS table
        self.hparams = HParamsSession(main_metrics(cfg)) if self.progress is not None else None
        # A sweep trial's own lines go to its train.log: the sweep's console is its [sweep] lines.
        self.tell: Callable[[str], None] = logging.getLogger("rnnlab").info if is_trial(cfg) else say
        self.trainer: pl.Trainer | None = None
        self.outcome: dict[str, Any] = {}
        self.last_line: str | None = None

    @property
    def callbacks(self) -> list[pl.Callback]:
        """The callbacks the run's trainer needs for its record (its epochs, the exception that stopped it)."""
        return [c for c in (self.progress, self.hparams) if c is not None]

    def under_way(self, trainer: pl.Trainer | None = None, line: str | None = None) -> None:
        """The run is under way: its directory stays, whatever happens now; ``line`` says what it does."""
        forget_reserved()
        self.trainer = trainer
        if self.record is None:
            return
        if line:
            self.tell(line)
        if trainer is not None:
            self.record.update(devices=[str(trainer.strategy.root_device)] * trainer.num_devices)

    def save_run_files(self, datamodule: pl.LightningDataModule, parameters: int) -> None:
        """A new training run's config, vocabulary (text: sampling and evaluation must use the training one)
        and HPARAMS session start; a resumed run keeps those it was made with."""
        if self.record is None or self.resuming:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / RUN_CONFIG).write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        vocabulary = getattr(datamodule, "vocabulary", None)
        if vocabulary is not None:
            vocabulary.save(self.run_dir / VOCABULARY)
        if self.hparams is not None and self.trainer is not None and self.record is not None:
            name = group_name(self.cfg, self.run_dir, self.record.id)
            self.hparams.start(self.trainer, run_settings(self.cfg), name, parameters)

    def kept_validation_metrics(self) -> dict[str, float]:
        """A resumed run's validation metrics as its record kept them from its last epoch: what a resume with
        no epoch left to train (a run killed while testing) reports, as it validates nothing."""
        if self.record is None or not self.resuming:
            return {}
        return {k: v for k, v in self.record.data["metrics"].items() if k.startswith("val/") and v is not None}

    def done(self, metrics: dict[str, float], line: str | None = None, **outcome: Any) -> None:
        """The run's final ``metrics`` (and ``checkpoints``, ``epoch``), recorded as the session ends; ``line``
        is said then."""
        self.outcome = {"metrics": metrics, **outcome}
        self.last_line = line

    def completed(self) -> None:
        if self.record is not None:
            self.record.finish("completed", **self.outcome)
            if self.hparams is not None and self.trainer is not None:
                self.hparams.finish(self.trainer, "completed", self.outcome.get("metrics", {}))
            for log_dir in tensorboard_dirs(self.trainer) if self.trainer is not None else []:
                drop_empty_hparams_file(log_dir)
            if self.last_line:
                self.tell(self.last_line)
        teardown_process_group(self.trainer)

    def ended_by(self, error: BaseException) -> None:
        """Finish the record with the fate ``error`` gives the run (the exception the trainer saw, where it saw
        one), TensorBoard's session with it, and say how to continue an interrupted training run."""
        if self.record is None:
            return
        status, line = fate((self.progress.exception if self.progress else None) or error)
        try:
            # epoch: the epochs done, as RecordProgress kept it; what the run reached and kept so far
            kept, reached = reached_so_far(self.trainer)
            self.record.finish(status, error=line, checkpoints=kept, metrics=reached)
        except OSError as write_error:  # a full disk: what stopped the run is still the error to report
            error.add_note(f"its record {self.record.path} could not be written ({first_line(write_error)})")
        # on a full disk, no room for TensorBoard's: the record has it
        if self.trainer is not None and self.hparams is not None and not disk_full(error):
            with contextlib.suppress(OSError):
                self.hparams.finish(self.trainer, status, self.record.data["metrics"])
        last = self.run_dir / "checkpoints" / "last.ckpt"
        # (a sweep trial's, kept on a cluster for a requeued job, is not the user's to continue)
        if self.kind == "train" and status == "interrupted" and last.is_file() and not is_trial(self.cfg):
            say(
                f"interrupted after {self.record.data['epoch'] or 0} epochs; continue with: "
                f"python src/train.py ckpt_path={last}"
            )


@contextlib.contextmanager
def run_session(
    cfg: DictConfig, run_dir: Path, kind: str, of_run: DictConfig | None = None, restart: bool = False
) -> Iterator[RunSession]:
    """The bookkeeping of a ``kind`` run writing to ``run_dir`` around the command's body: the record started
    (or resumed) as the block starts, finished with the run's fate however it ends; the exception propagates.

    ``of_run``: for eval and generate outputs, the config of the run whose checkpoint they use. ``restart``: a
    requeued SLURM job trains its run again from the start, under the same record (``rnnlab.app.requeue``).
    """
    session = RunSession(cfg, run_dir, kind, of_run, restart)
    try:
        yield session
    except BaseException as error:
        session.ended_by(error)
        if isinstance(error, SystemExit) and not error.code:  # Lightning's SIGTERMException exits with 0
            raise Terminated("SIGTERM in fit") from None  # exit code 143 with its line (rnnlab.app.setup)
        raise
    session.completed()


def reached_so_far(trainer: pl.Trainer | None) -> tuple[dict[str, str | None], dict[str, float]]:
    """What an unfinished run has to show: the checkpoints on disk and its last validation metrics."""
    if trainer is None:
        return {}, {}
    kept: dict[str, str | None] = {k: v for k, v in checkpoint_paths(trainer).items() if v and Path(v).is_file()}
    validated = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return kept, validated


def teardown_process_group(trainer: pl.Trainer | None) -> None:
    """Lightning leaves a DDP process group alive; a gloo group still alive when the interpreter exits can
    abort the finished process ("terminate called without an active exception", exit code -6)."""
    import torch

    if trainer is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        trainer.strategy.barrier("rnnlab-teardown")
        torch.distributed.destroy_process_group()
