"""Where and with what a run executes: its host and process, package versions, the command, the git checkout.

Stdlib only; ``git`` is asked as a subprocess, and its absence (or a directory outside a checkout) is None.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

from rnnlab.runs.process import hostname
from rnnlab.runs.scheduler import slurm_job

VERSIONED_PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "optuna", "rnnlab")


def _run_git(cwd: str | Path, *args: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):  # git missing, cwd missing, hung
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout containing ``cwd``; None outside git or without git."""
    cwd = cwd or os.getcwd()
    commit = _run_git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _run_git(cwd, "status", "--porcelain", "--untracked-files=normal")
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def git_patch(cwd: str | Path | None = None) -> str:
    """``git diff HEAD`` (binary-safe), preceded by ``#`` comment lines naming untracked files (whose
    content it leaves out); ``git apply`` ignores the comments."""
    cwd = cwd or os.getcwd()
    diff = _run_git(cwd, "diff", "HEAD", "--binary") or ""
    untracked = (_run_git(cwd, "ls-files", "--others", "--exclude-standard") or "").split()
    header = "".join(f"# untracked, not in this patch: {name}\n" for name in untracked)
    return header + diff


def git_with_patch(cwd: Path, run_dir: Path, patch_name: str) -> dict[str, Any] | None:
    """``git_state`` plus ``patch``: the file in ``run_dir`` holding a dirty checkout's changes, else None."""
    git = git_state(cwd)
    if git is not None:
        git["patch"] = None
        if git["dirty"]:
            (run_dir / patch_name).write_text(git_patch(cwd), encoding="utf-8")
            git["patch"] = patch_name
    return git


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Versions from package metadata (importing torch only to ask would cost seconds); missing -> None."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """Where and with what this process runs: ``{"host", "pid", "versions", "slurm"}`` (slurm: its SLURM job,
    rnnlab.runs.scheduler, or None)."""
    return {"host": hostname(), "pid": os.getpid(), "versions": dict(package_versions()), "slurm": slurm_job()}


def current_command() -> list[str]:
    """This process's command as typed, with the Python executable: ``[python, script, *args]``."""
    return [sys.executable, *sys.argv]
