"""One writer per run, enforced before Hydra touches anything: the ``HoldRunDir`` Hydra callback.

A train, eval or generate command holds the directory it writes (``rnnlab.runs.hold``) from before Hydra
saves its config and opens its log there until it ends, so:

- a resume (``ckpt_path=<run dir>/checkpoints/last.ckpt``) of a run that another process is training or
  resuming is refused naming that process; of two resumes started at once exactly one runs;
- ``hydra.run.dir=`` must name a new or empty directory (a run's own directory is continued with
  ``ckpt_path=``, never written over), and may not be empty;
- eval and generate, which read a run's checkpoint and write beside it (``<run dir>/eval/version_<n>``), are
  refused while another process writes that run. They would add only their own folder, but the checkpoint
  they read is rewritten (``last.ckpt``, every epoch) or deleted (a beaten ``best-*.ckpt``) by the live run,
  so they could read half a file or lose it mid-read; after the run ends they read a checkpoint that stays.

Sweep jobs (multiruns) get fresh directories of their own and are not held; the ranks Lightning starts for a
DDP run (RANK/LOCAL_RANK set, not 0) share rank 0's hold.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnnlab.app.rundirs import claim, release_reserved, run_dir_of_checkpoint
from rnnlab.app.setup import user_error
from rnnlab.errors import ConfigError
from rnnlab.runs.hold import RunHold, live_holder, refusal
from rnnlab.runs.store import RECORD_FILE

_HOLDS: list[RunHold] = []  # this process's holds, kept until it ends
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")  # as Lightning reads a rank
RANK_ZERO_WAIT_S = 120  # how long another rank waits for rank 0 to hold the run directory


class HoldRunDir(Callback):
    """Hydra callback: hold the run directory before Hydra writes there (after ``ValidateConfig``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

        if "study" in config:
            return
        if launched_rank() != 0:
            wait_for_rank_zero(config)
            return
        try:
            hold_run_dir(config)
        except (MissingMandatoryValue, InterpolationResolutionError):
            return  # Hydra raises it again as it makes the run directory; run_hydra_app words it
        except Exception as error:
            message = user_error(error)  # a value or file not allowed (a resume's checks build the model)
            if message is None:  # a bug: Hydra would turn it into a warning and run the command unheld
                traceback.print_exc()
                raise SystemExit(1) from None
            release_reserved()
            raise SystemExit(f"error: {message}") from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The command is over (however it ended): its run directory is free for the next one, also when the
        next command runs in this same process (a notebook, an in-process test)."""
        release_holds()


def release_holds() -> None:
    """Free every run directory this process holds."""
    while _HOLDS:
        _HOLDS.pop().release()


def launched_rank() -> int:
    """This process's rank in a multi-process run, from the environment its launcher set (0 if none)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return int(value) if value.strip().isdigit() else 0
    return 0


def wait_for_rank_zero(config: DictConfig) -> None:
    """A rank started beside rank 0 (``srun`` starts every task at once; Lightning starts its own ranks after
    rank 0 holds the run) writes nothing into the run directory until rank 0 holds it, so rank 0's check that
    the directory is new sees none of this rank's files. The ranks share one directory only when it is given."""
    from hydra.core.hydra_config import HydraConfig

    given = [*config.hydra.overrides.hydra, *config.hydra.overrides.task]
    if not any(str(o).lstrip("+").startswith("hydra.run.dir=") for o in given):
        raise SystemExit(
            f"error: rank {launched_rank()} has no hydra.run.dir; allowed: give every rank the same "
            "hydra.run.dir=<run dir> (srun starts each rank as its own command, e.g. slurm/ddp.sbatch)"
        )
    HydraConfig.instance().set_config(config)
    run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir"))).expanduser().resolve()
    deadline = time.monotonic() + RANK_ZERO_WAIT_S
    while live_holder(run_dir) is None:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"error: rank {launched_rank()}: rank 0 did not take hold of {run_dir} within {RANK_ZERO_WAIT_S} s"
            )
        time.sleep(0.2)


def hold_run_dir(config: DictConfig) -> RunHold:
    """Check where this command writes and hold it; a one-line ``CommandError`` where it may not."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)  # so ${hydra:...} in hydra.run.dir resolves
    key = "ckpt" if "ckpt" in config else "ckpt_path"
    checkpoint = OmegaConf.select(config, key, throw_on_missing=False)
    source = run_dir_of_checkpoint(checkpoint, key) if checkpoint else None
    training = "model" in config
    if source is not None and not training:  # eval, generate: before their folder is reserved inside the run
        refuse_if_live(source, f"the run of {key}={checkpoint} ({source})")
    wanted = OmegaConf.select(config, "hydra.run.dir")  # a new run's version_<n> is reserved here
    if wanted is None or not str(wanted).strip():
        raise ConfigError(
            f"hydra.run.dir={wanted!r} is empty; allowed: a new or empty directory for the run, or leave "
            "hydra.run.dir out (logs/<task>/<run>/seed<seed>/version_<n>)"
        )
    run_dir = Path(str(wanted)).expanduser().resolve()
    if training and source == run_dir:  # a resume
        check_resume(config, checkpoint, run_dir)
    else:
        if training and source is not None:  # a new run started from another run's checkpoint
            refuse_if_live(source, f"the run of {key}={checkpoint} ({source})")
        check_new_run_dir(run_dir)
    hold = RunHold.take(run_dir)
    _HOLDS.append(hold)
    return hold


def refuse_if_live(run_dir: Path, subject: str | Path) -> None:
    """A one-line ``RunHeld`` naming the live process that holds ``run_dir``, if one does."""
    holder = live_holder(run_dir)
    if holder is not None:
        raise refusal(subject, holder)


def check_resume(config: DictConfig, checkpoint: str, run_dir: Path) -> None:
    """A resume of a run nobody writes that can continue it (``rnnlab.app.resume``), checked before the run is
    held: a resume refused for a reason of its own is refused for it, and never stands in another's way."""
    from rnnlab.app.resume import resume_config

    refuse_if_live(run_dir, run_dir)
    resume_config(checkpoint, list(config.hydra.overrides.task), announce=False)


def check_new_run_dir(run_dir: Path) -> None:
    """A new run's directory: one nobody writes, new or empty (created here, removed if the command is refused)."""
    refuse_if_live(run_dir, run_dir)
    if not run_dir.exists():
        claim(run_dir)
    elif not run_dir.is_dir():
        raise ConfigError(f"hydra.run.dir={run_dir} is not a directory; allowed: a new or empty directory")
    elif any(run_dir.iterdir()):
        what = "a run (run.json)" if (run_dir / RECORD_FILE).exists() else "files"
        raise ConfigError(
            f"hydra.run.dir={run_dir} already holds {what}; allowed: a new or empty directory (continue a "
            "run with ckpt_path=<run dir>/checkpoints/last.ckpt)"
        )
