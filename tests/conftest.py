"""Shared fixtures: small composed configs (the real conf/ tree), one MNIST-1D cache per session.

Helpers (the tiny budget, the CLI runner, TensorBoard readers) are in ``helpers.py``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

# Two pytest workers share 2 cores, and each runs commands beside its own (the document test two documents at
# once, a test its command's processes): an OpenMP thread that spins while it waits for work holds a core another
# process needs. Set before torch is loaded here, inherited by every command a test starts (measured: the
# document test's commands take a fifth less CPU time; docs/development.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from helpers import TINY, compose_config  # noqa: E402
from rnnlab.app.setup import register_resolvers  # noqa: E402

register_resolvers()

# A suite started in the background by a script (`make test &`) inherits SIGINT ignored, and so would every
# command it starts: the Ctrl-C tests would find Ctrl-C doing nothing. A handled signal is reset to its
# default in the commands the tests start, so each gets Python's KeyboardInterrupt as a user's terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# The longest test files first, longest first (measured with --durations=0; docs/development.md): pytest-xdist's
# --dist loadfile hands files to its workers in collection order, and a long file handed out last would run on
# while the other worker idles. The rest follow in their own order, the quick unit files among them.
LONGEST_FIRST = (
    "test_doc_commands.py",
    "test_study.py",
    "test_sweep.py",
    "test_records.py",
    "test_sweeper_lost.py",
    "test_faults_signals.py",
    "test_cli.py",
    "test_user_errors.py",
    "test_faults_concurrency.py",
    "test_scaling.py",
    "test_sweeper_studies.py",
    "test_faults_sweeps.py",
    "test_report.py",
    "test_runs_table.py",
    "test_faults_disk.py",
    "test_gpu.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests stay in order


def pytest_terminal_summary(terminalreporter) -> None:
    """After the document test, its costliest commands (its durations show only the fixture that runs them all)."""
    from doc_runner import costliest_commands  # here, not at start-up: it imports urllib, http and more

    lines = costliest_commands(terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []))
    if lines:
        terminalreporter.section(lines[0])
        for line in lines[1:]:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One generated MNIST-1D cache for the whole session (generation takes a few seconds)."""
    from rnnlab.data import mnist1d_arrays

    path = tmp_path_factory.mktemp("data")
    mnist1d_arrays(path)
    return path


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    """make_cfg(*overrides, run="run") -> a tiny training config writing into tmp_path/<run>."""

    def make(*overrides: str, run: str = "run", tiny: bool = True) -> DictConfig:
        return compose_config("train", (TINY if tiny else []) + list(overrides), tmp_path / run, data_dir)

    return make
