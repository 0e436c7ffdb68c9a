"""What every entry point does before and around Hydra: the root directory, resolvers, one-line errors.

Light on purpose (no torch at import): ``src/train.py`` imports it before Hydra composes anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab import budget
from rnnlab.app.rundirs import _beside_run, _hydra_subdir, _new_sweep_dir, _run_dir, release_reserved
from rnnlab.errors import CommandError, not_allowed


def prepare_entry_point() -> None:
    """What every ``src/*.py`` entry point does before Hydra composes: the repository root for
    ``paths.root_dir`` (unless RNNLAB_ROOT is set) and the resolvers ``conf/`` uses."""
    os.environ.setdefault("RNNLAB_ROOT", str(Path(__file__).resolve().parents[3]))
    budget.active()  # an unknown RNNLAB_BUDGET is refused before anything is composed or written
    register_resolvers()


def register_resolvers() -> None:
    """Resolvers used by conf/hydra (cached: Hydra may read the run dir more than once)."""
    for name, resolver in (
        ("run_dir", _run_dir),
        ("beside_run", _beside_run),
        ("hydra_subdir", _hydra_subdir),
        ("new_sweep_dir", _new_sweep_dir),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
    if not OmegaConf.has_resolver("compare_hidden_size"):  # conf/experiment/compare_cells.yaml
        OmegaConf.register_new_resolver("compare_hidden_size", _compare_hidden_size)
    if not OmegaConf.has_resolver("budget_capped"):  # a count shrunk under RNNLAB_BUDGET=tiny (rnnlab.budget)
        OmegaConf.register_new_resolver("budget_capped", budget.capped)


# What to give for a mandatory (``???``) value, by key; other keys: ``<key>=<value>``.
REQUIRED_VALUES = {"ckpt_path": "<run dir>/checkpoints/last.ckpt", "ckpt": "<run dir>/checkpoints/last.ckpt"}


def required(error: Exception) -> str:
    """The message for a mandatory value left unset (OmegaConf names the key only in its message when the
    value is reached through an interpolation, such as the run directory)."""
    from omegaconf.errors import MissingMandatoryValue

    key = error.full_key if isinstance(error, MissingMandatoryValue) else None
    match = re.search(r"Missing mandatory value: ([\w.]+)", str(error))
    key = key or (match.group(1) if match else "a value")
    return f"{key} is required; give {key}={REQUIRED_VALUES.get(key, '<value>')}"


def unparsable(override: str) -> str:
    """The message for an override Hydra's grammar rejects: most often a quote or bracket in a free-text value."""
    key, sep, value = override.partition("=")
    if not sep:
        return f"{override!r} cannot be parsed; give key=value"
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    shell = '"' + f"{key}={quoted}".replace("\\", "\\\\").replace('"', '\\"') + '"'
    return (
        f"{override} cannot be parsed: quote a value with quotes, brackets or commas so Hydra reads {key}={quoted} "
        f"(in a shell: {shell})"
    )


def _compare_hidden_size(*, _root_: DictConfig) -> int:
    from rnnlab.app.compare import compare_hidden_size  # torch is imported only when a config uses it

    return compare_hidden_size(_root_)


def run_hydra_app(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; a bad config ends the command with one line naming it, exit code 1."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let errors reach us instead of Hydra's reporter
    try:
        main()
    except (MissingMandatoryValue, InterpolationToMissingValueError) as error:  # a ``???`` value not given
        raise SystemExit(f"error: {required(error)}") from None
    except OverrideParseException as error:  # e.g. prompt=don't: the apostrophe opens a quoted string
        raise SystemExit(f"error: {unparsable(error.override)}") from None
    except MissingConfigException as error:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        if error.options is None or not group:
            raise SystemExit(f"error: {error}") from None
        raise SystemExit(f"error: {not_allowed(group, option, error.options, sort=False)}") from None
    except (CommandError, ConfigCompositionException) as error:
        raise SystemExit(f"error: {error}") from None
    except InstantiationException as error:  # a constructor rejected a value (the datamodule, the model)
        if isinstance(error.__cause__, ValueError):
            raise SystemExit(f"error: {error.__cause__}") from None
        raise


def user_error(error: BaseException) -> str | None:
    """The one-line message of an error that is the user's (a value or file not allowed), else None."""
    from hydra.errors import InstantiationException

    if isinstance(error, CommandError):
        return str(error)
    if isinstance(error, InstantiationException) and isinstance(error.__cause__, ValueError):
        return str(error.__cause__)  # a constructor rejected a value (the datamodule, the model)
    return None


def run_command(body: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run a command's body inside its Hydra job.

    A user error ends a single run with one line (``error: ...``, exit code 1) and removes the directories
    the command reserved (its run directory, unless the run got under way); Hydra's own "Error executing
    job" line is not printed. In a multirun the error is raised for the sweeper or launcher to record.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return body(cfg)
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        release_reserved()
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        raise SystemExit(f"error: {message}") from None
