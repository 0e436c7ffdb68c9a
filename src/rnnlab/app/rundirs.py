"""Run directories: where a run, its checkpoints and its eval/generate outputs live, and its saved config."""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import CommandError, ConfigError, first_line
from rnnlab.runs.store import reserve_dir

RUN_CONFIG = "config.yaml"  # the resolved config, saved in every run directory
VOCABULARY = "vocab.json"  # a text run's vocabulary, beside its config and checkpoints


# Run configs written before the package was regrouped (2026-12) name the old module paths; their classes
# now live in subpackages. Applied when a saved run config is loaded (resume, eval, generate, report).
LEGACY_TARGETS = {
    "rnnlab.synthetic.": "rnnlab.data.",
    "rnnlab.text.": "rnnlab.data.",
    "rnnlab.diagnostics.": "rnnlab.callbacks.",
    "rnnlab.figures.": "rnnlab.callbacks.",
    "rnnlab.views.": "rnnlab.callbacks.",
}


def run_dir_of_checkpoint(ckpt_path: str, key: str = "ckpt_path") -> Path:
    """``<run dir>/checkpoints/<name>.ckpt`` -> ``<run dir>``; errors name the checkpoint as ``key``."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    if not ckpt.is_file():
        raise ConfigError(
            f"{key}={ckpt_path!r} is not a file; give a checkpoint such as <run dir>/checkpoints/last.ckpt"
        )
    if ckpt.parent.name != "checkpoints" or not (ckpt.parent.parent / RUN_CONFIG).is_file():
        raise ConfigError(
            f"{key}={ckpt_path!r} is not inside a run directory "
            f"(<run dir>/checkpoints/*.ckpt beside <run dir>/{RUN_CONFIG})"
        )
    return ckpt.parent.parent


# Directories this process reserved (and the topmost folder it created for each), so a command refused after
# Hydra made its run directory leaves nothing behind.
_RESERVED: list[tuple[Path, Path]] = []


def reserve(parent: str | Path, prefix: str = "version_") -> Path:
    """Atomically reserve ``<parent>/<prefix><n>`` (n one past the highest taken; concurrent commands get
    distinct directories) and remember it for ``release_reserved``."""
    parent = Path(parent).absolute()
    top = parent
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    created_top = top if not top.exists() else None
    with creating(parent):
        path = reserve_dir(parent, prefix)
    _RESERVED.append((path, created_top or path))
    return path


def claim(path: str | Path) -> None:
    """Create the directory the user named for a new run (``hydra.run.dir=...``) and remember it like a
    reserved one; one that another command created meanwhile is left to it."""
    path = Path(path).absolute()
    top = path
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        return
    _RESERVED.append((path, top))


def release_reserved() -> None:
    """Remove what this process reserved, with the folders it created for it while they hold nothing else."""
    while _RESERVED:
        path, top = _RESERVED.pop()
        shutil.rmtree(path, ignore_errors=True)
        folder = path.parent
        while top != path and top in (folder, *folder.parents):
            try:
                folder.rmdir()  # only when empty: another run may have arrived meanwhile
            except OSError:
                break
            if folder == top:
                break
            folder = folder.parent


@contextlib.contextmanager
def creating(path: Path) -> Iterator[None]:
    """An OSError creating ``path`` (a read-only file system, a file where a folder should be, a full disk)
    becomes one line naming the path and the problem."""
    try:
        yield
    except FileExistsError:
        raise  # a name taken meanwhile: the caller tries the next
    except OSError as error:
        raise CommandError(f"cannot create {path}: {os_problem(error, path)}") from error


def os_problem(error: OSError, path: Path) -> str:
    """What stopped an operation on ``path``, in words, with the path where it happened."""
    if error.errno == errno.ENOTDIR:  # the first thing on the way that exists and is not a folder
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), error.filename)
        return f"{blocker} is a file, not a directory"
    where = error.filename or path
    reason = (error.strerror or type(error).__name__).lower()
    return f"{where}: {reason}"


def forget_reserved() -> None:
    """The command got under way: what it reserved is its run's and stays."""
    _RESERVED.clear()


def _run_dir(ckpt_path: str | None, runs_dir: str) -> str:
    """Hydra's run dir: a resumed run continues in its own directory, a new run reserves a new version."""
    return str(run_dir_of_checkpoint(ckpt_path) if ckpt_path else reserve(runs_dir))


def _new_sweep_dir(wanted: str) -> str:
    """A multirun's directory (``multirun/<task>/<timestamp>``), created here and now: ``<wanted>_2``, ``_3``, ...
    when another multirun started in the same second already took it, so two multiruns never share jobs'
    folders. Cached by the resolver: the sweep and its jobs (joblib workers too: Hydra hands them the cache)
    read the one directory."""
    wanted_path = Path(wanted).absolute()
    candidate, number = wanted_path, 1
    while True:
        try:
            with creating(candidate):
                candidate.parent.mkdir(parents=True, exist_ok=True)
                candidate.mkdir()
        except FileExistsError:
            number += 1
            candidate = wanted_path.with_name(f"{wanted_path.name}_{number}")
            continue
        return str(candidate)


def _beside_run(ckpt_path: str, kind: str) -> str:
    """``<run dir>/<kind>/version_<n>``: where eval and generation outputs of a checkpoint go."""
    return str(reserve(run_dir_of_checkpoint(ckpt_path) / kind))


RESUMES_DIR = ".hydra/resumes"  # a resume's own Hydra record, beside the run's original .hydra/


def _hydra_subdir(ckpt_path: str | None) -> str:
    """Where Hydra saves this command's config, overrides and hydra.yaml: ``.hydra`` for a new run; for a
    resume its own ``.hydra/resumes/resume_<n>``, so the command that made the run is never overwritten."""
    if not ckpt_path:
        return ".hydra"
    run_dir = run_dir_of_checkpoint(ckpt_path)
    return str(reserve(run_dir / RESUMES_DIR, "resume_").relative_to(run_dir))


def upgrade_targets(node: Any) -> Any:
    """``node`` with every ``_target_`` of a pre-regrouping config pointed at the class's current home."""
    if isinstance(node, dict):
        return {key: _upgraded(value) if key == "_target_" else upgrade_targets(value) for key, value in node.items()}
    if isinstance(node, list):
        return [upgrade_targets(item) for item in node]
    return node


def _upgraded(target: Any) -> Any:
    for old, new in LEGACY_TARGETS.items():
        if isinstance(target, str) and target.startswith(old):
            return new + target[len(old) :]
    return target


def load_run_config(run_dir: str | Path) -> DictConfig:
    """A run directory's saved ``config.yaml``, readable whatever rnnlab version wrote it.

    A file that is not a run config (truncated, edited by hand into invalid YAML) is one-line ``ConfigError``.
    """
    path = Path(run_dir) / RUN_CONFIG
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as error:  # YAML syntax, an unreadable file
        raise ConfigError(f"{path} is not a readable run config ({first_line(error)})") from None
    if not isinstance(raw, dict) or "model" not in raw or "data" not in raw:
        raise ConfigError(f"{path} is not a run config (it has no model and data sections)")
    return OmegaConf.create(upgrade_targets(raw))
