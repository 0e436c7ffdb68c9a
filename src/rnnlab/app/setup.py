"""What every entry point does before and around Hydra: the root directory, resolvers, one-line errors.

Light on purpose (no torch at import): ``src/train.py`` imports it before Hydra composes anything.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab import budget
from rnnlab.app.rundirs import _beside_run, _hydra_subdir, _new_sweep_dir, _run_dir, release_reserved
from rnnlab.errors import (
    EXIT_CODES,
    CommandError,
    first_line,
    interrupting_signal,
    not_allowed,
    raised_from,
)
from rnnlab.runs.signals import interruptible


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


CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
# Config groups a command cannot run without: ``~<group>`` is refused (``~model/scheduler``, ``~logger``,
# ``~callbacks`` are fine: the code runs without them).
NEEDED_GROUPS = ("data", "model", "model/optimizer", "trainer", "paths", "hydra")


def check_overrides(arguments: Sequence[str]) -> None:
    """Refuse, before Hydra composes, the overrides its messages explain badly: one with no key (``=3``) and
    the removal of a config group every run needs (``~model``)."""
    for argument in arguments:
        if argument.startswith("="):
            raise CommandError(f"{argument!r} has no key; give key=value, such as model.hidden_size=64")
        if argument.startswith("~"):
            group = re.split(r"[=@]", argument[1:], maxsplit=1)[0]
            if group in NEEDED_GROUPS:
                options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
                raise CommandError(
                    f"{argument} is not allowed: every run needs a {group} config; choose one with "
                    f"{group}=<name> (allowed: {', '.join(options)})"
                )


def unknown_key(error: Exception) -> str | None:
    """The message for ``key=value`` naming a key the config lacks: the keys it has, or ``+key=`` to add one."""
    from omegaconf import DictConfig
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause, match = error.__cause__, re.search(r"use \+(\S+)", str(error))
    parent = getattr(cause, "parent_node", None)
    if (
        not isinstance(cause, (ConfigAttributeError, ConfigKeyError))
        or not isinstance(parent, DictConfig)
        or match is None
    ):
        return None
    override = match.group(1)
    section = parent._get_full_key(None) or "the config"
    keys = ", ".join(sorted(str(key) for key in parent.keys()))
    return f"{override}: {section} has no key {cause.key!r}; its keys: {keys}; or add one with +{override}"


def _compare_hidden_size(*, _root_: DictConfig) -> int:
    from rnnlab.app.compare import compare_hidden_size  # torch is imported only when a config uses it

    return compare_hidden_size(_root_)


def run_hydra_app(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; a bad config ends the command with one line naming it, exit code 1;
    SIGINT and SIGTERM, wherever they land, with one line and exit code 130 or 143 (docs/usage.md)."""
    with interruptible():  # SIGTERM raises Terminated where Ctrl-C raises KeyboardInterrupt
        try:
            hold_for_test("start")
            _run_reporting_errors(main)
        except BaseException as error:
            name = interrupting_signal(error)
            if name is None or (isinstance(error, SystemExit) and error.code in EXIT_CODES.values()):
                raise  # not an interruption, or one already reported (a sweep, a study)
            release_reserved()  # interrupted before the command got under way: nothing of it stays
            print(f"error: interrupted by {name}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CODES[name]) from None


def hold_for_test(point: str) -> None:
    """Test hook: where ``RNNLAB_TEST_HOLD`` is ``<point>:<file>``, create the file and wait there until a signal
    ends the wait or the test removes the file (at most 120 s), so a test can signal the command at that exact
    point (tests/faults/test_faults_signals.py). ``start``: before Hydra composes; ``composed``: a single run's
    job, its run directory reserved, before the command's body; ``job``: the same in each job of a multirun (a
    sweep's trial, a comparison's run); ``checkpoints``: between the best's and last.ckpt's saves of an epoch."""
    wanted, _, marker = os.environ.get("RNNLAB_TEST_HOLD", "").partition(":")
    if wanted == point and marker:
        Path(marker).touch()
        deadline = time.monotonic() + 120
        while Path(marker).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _run_reporting_errors(main: Callable[[], Any]) -> None:
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let errors reach us instead of Hydra's reporter
    try:
        check_overrides(sys.argv[1:])
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
    except ConfigCompositionException as error:
        raise SystemExit(f"error: {unknown_key(error) or error}") from None
    except CommandError as error:
        raise SystemExit(f"error: {error}") from None
    except InstantiationException as error:  # a constructor rejected a value (the datamodule, the model)
        if isinstance(error.__cause__, ValueError):
            raise SystemExit(f"error: {error.__cause__}") from None
        raise
    except Exception as error:  # e.g. a run directory that cannot be made, raised while Hydra resolves its path
        cause = raised_from(error, CommandError)
        if cause is None:
            raise
        raise SystemExit(f"error: {cause}") from None


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

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        hold_for_test("job" if multirun else "composed")
        return body(cfg)
    except Exception as error:
        message = user_error(error)
        fault = raised_from(error, OSError) if message is None else None
        if message is None and fault is None:
            raise
        release_reserved()
        if multirun:
            raise
        if fault is not None:  # the environment's: read-only, not a directory, a full disk, a failing write
            message = f"{first_line(fault)}{''.join(f'; {note}' for note in getattr(error, '__notes__', []))}"
            message += f" ({log_traceback(error)})"
        raise SystemExit(f"error: {message}") from None


def log_traceback(error: BaseException) -> str:
    """Append ``error``'s traceback to the job's log file (Hydra's ``<run dir>/<job>.log``), not the terminal;
    what to tell the user about where it is."""
    import logging
    import traceback

    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if not files:
        return "no log file to hold the traceback"
    text = "".join(traceback.format_exception(error))
    try:
        with open(files[0], "a", encoding="utf-8") as log:
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}][rnnlab][ERROR] - the command failed:\n{text}")
    except OSError as write_error:
        return f"its traceback could not be written to {files[0]}: {first_line(write_error)}"
    return f"the traceback is in {files[0]}"
