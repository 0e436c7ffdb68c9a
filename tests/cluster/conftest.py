"""The throwaway SLURM cluster of tests/cluster: started once per session by ``cluster.sh`` (or one already
started, named by ``RNNLAB_CLUSTER_DIR``: `.ci/run` and `make cluster-check` start it before pytest), stopped at
the end when this session started it. Where it cannot start (not root, no apt-get, a daemon that does not come
up) every test here skips with the script's one-line reason (``RNNLAB_CLUSTER_SKIP`` where `.ci/run` tried)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "cluster.sh"
START_TIMEOUT_S = 900  # apt-get install on a fresh machine included


def parse_env(text: str) -> dict[str, str]:
    """cluster.sh's ``export NAME=value`` lines (values shell-quoted), as a dict."""
    env = {}
    for line in text.splitlines():
        name, equals, value = line.removeprefix("export ").partition("=")
        if line.startswith("export ") and equals:
            env[name] = " ".join(shlex.split(value))
    return env


@pytest.fixture(scope="session")
def cluster() -> dict[str, str]:
    """The cluster's environment: SLURM_CONF, PATH (with the daemons' sbin), RNNLAB_CLUSTER_PG_URL, ..."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    if os.environ.get("RNNLAB_CLUSTER_SKIP"):  # .ci/run could not start it: its reason
        pytest.skip(os.environ["RNNLAB_CLUSTER_SKIP"])
    given = os.environ.get("RNNLAB_CLUSTER_DIR")
    if given:
        if not (Path(given) / "env").is_file():
            pytest.skip(f"RNNLAB_CLUSTER_DIR={given} holds no running cluster (no env file)")
        yield parse_env((Path(given) / "env").read_text())
        return
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=START_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"cluster: cannot start: {error}")
    if started.returncode != 0:
        lines = started.stderr.strip().splitlines() or [f"cluster.sh exited {started.returncode}"]
        pytest.skip(lines[-1])
    env = parse_env(started.stdout)
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", env["RNNLAB_CLUSTER_DIR"]], capture_output=True, timeout=120)
