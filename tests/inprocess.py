"""Running a ``src/*.py`` command inside the test process, as ``python src/<script> args`` would run it.

Most of a tiny command's time is Python's and torch's start-up (about 5 s on 2 cores); a test about what a
command does, not about the process around it, runs it here instead: the script is run as ``__main__`` with
``sys.argv``, the environment and the working directory it would have, file descriptors 1 and 2 (and
``sys.stdout``/``sys.stderr``) captured, and the exit code a process would have. What a command changes in
this process (environment, working directory, signal handlers, logging handlers, warnings filters, torch's
threads, Hydra's global state, the run holds, joblib's worker processes) is put back after it. Signals, exit
codes at start-up, a command killed halfway, DDP's extra processes and concurrent commands still need a real
process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator


def run_main(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """``argv`` = ``[<path of a script>, *args]`` run here; a CompletedProcess as ``subprocess.run`` gives it."""
    script, args = argv[0], argv[1:]

    def body() -> None:
        sys.argv = [script, *args]
        runpy.run_path(script, run_name="__main__")

    rc, out, err = call_captured(body, env, cwd)
    return subprocess.CompletedProcess([sys.executable, *argv], rc, out, err)


def call_captured(body: Callable[[], object], env: dict[str, str] | None = None, cwd: str | None = None):
    """``body()`` with fds 1 and 2 captured, in ``env`` and ``cwd``; (exit code, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, restored_process_state():
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
            # PYTHONPATH as a new process would read it (e.g. tests/fixtures for a test callback's _target_)
            sys.path[:0] = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        if cwd is not None:
            os.chdir(cwd)
        if os.environ.get("PYTHONWARNINGS") == "ignore":
            warnings.simplefilter("ignore")
        with captured(out, err):
            rc = exit_code(body)
        out.seek(0)
        err.seek(0)
        return rc, out.read(), err.read()


def exit_code(body: Callable[[], object]) -> int:
    """What the process's exit code would be: SystemExit's code (a message printed to stderr gives 1), 1 with
    the traceback printed for any other exception."""
    try:
        body()
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)  # as Python prints any other code, which exits 1
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


@contextlib.contextmanager
def captured(out, err) -> Iterator[None]:
    """fds 1 and 2 into ``out`` and ``err``, and ``sys.stdout``/``sys.stderr`` on them (under pytest's capture
    ``sys.stdout`` does not write to fd 1)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.close(saved_fds[0])
        os.close(saved_fds[1])


def fresh_hydra() -> None:
    """Hydra's global state as in a new process. Its job config left set, a composition could resolve
    ``${hydra:...}`` where a new process cannot (OmegaConf dereferences an interpolation it merges over) and,
    e.g., reserve a run directory."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


def stop_joblib_workers() -> None:
    """End joblib's reusable worker processes (Hydra's joblib launcher) with the command that started them, as
    its process would: kept, they would run the next command's jobs in this command's environment."""
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """Put back what a command changes in its process (see the module's docstring)."""
    import torch  # imported here once, so its thread count can be put back (a run sets threads=N)

    environ, cwd, argv, path = dict(os.environ), os.getcwd(), sys.argv, sys.path[:]
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    root = logging.getLogger()
    root_handlers, root_level = root.handlers[:], root.level
    threads = torch.get_num_threads()
    fresh_hydra()  # a test's own compose() may have left it set
    try:
        with warnings.catch_warnings():
            yield
    finally:
        from rnnlab.app.holds import release_holds
        from rnnlab.app.rundirs import forget_reserved

        release_holds()  # a process ends a command's hold; this one goes on
        forget_reserved()  # what a finished command reserved is its run's
        fresh_hydra()
        stop_joblib_workers()
        for handler in root.handlers:
            if handler not in root_handlers:
                handler.close()  # e.g. Hydra's file handler on the run's train.log
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        torch.set_num_threads(threads)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        sys.argv = argv
        sys.path[:] = path
