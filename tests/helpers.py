"""Test helpers: the tiny training budget, composing configs, running the CLI, reading TensorBoard events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from omegaconf import DictConfig

from rnnlab import budget
from rnnlab.app.compose import compose_run_config

ROOT = Path(__file__).resolve().parents[1]


CONF = ROOT / "conf"


def tiny(**replaced: int) -> list[str]:
    """The tiny budget (``rnnlab.budget``, the one home of its caps) as a run's overrides, on one core, with the
    numbers a test picks itself replaced (``tiny(max_epochs=3)``). Sizes and counts only: the model summary,
    the progress bar and every other code path a user's run takes stay on."""
    return [*budget.overrides(**replaced), "threads=1"]


# The smallest run most tests need: one epoch, one validation and one test batch.
TINY = tiny(max_epochs=1, limit_val_batches=1, limit_test_batches=1)


def compose_config(config_name: str, overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as the CLI would, with the run writing into ``output_dir``."""
    return compose_run_config(overrides, output_dir, data_dir, config_name)


def cli_env(root: Path) -> dict[str, str]:
    """The environment of a command run as a user would, with logs under ``root`` (RNNLAB_ROOT)."""
    return {**os.environ, "RNNLAB_ROOT": str(root), "PYTHONWARNINGS": "ignore"}


def run_cli(
    script: str, *args: str, root: Path, timeout: float = 300, process: bool = False
) -> subprocess.CompletedProcess:
    """Run ``src/<script>`` as a user would, with logs under ``root`` (RNNLAB_ROOT): in this process
    (tests/inprocess.py: the start-up is most of a tiny command's time), or in a process of its own where
    ``process`` (what the test is about needs one: DDP's ranks, a process's own environment)."""
    if not process:
        from inprocess import run_main

        return run_main([str(ROOT / "src" / script), *args], env=cli_env(root), cwd=str(ROOT))
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=ROOT,
        env=cli_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_clis(commands: list[tuple[str, list[str], Path]]) -> list[subprocess.CompletedProcess]:
    """``run_cli`` for each ``(script, args, root)`` in this process, one after another; the results in the
    order given. For rows of one kind checked one test per row."""
    return [run_cli(script, *args, root=root) for script, args, root in commands]


def start_cli(script: str, *args: str, root: Path) -> subprocess.Popen:
    """Start ``src/<script>`` in the background (its output in pipes), with logs under ``root``."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=ROOT,
        env=cli_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_session_status(run_dir: Path) -> str | None:
    """The HPARAMS session-end status a run wrote (``STATUS_SUCCESS``, ...), None when it wrote none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    from rnnlab.app.hparams import session_dir

    if not session_dir(run_dir).is_dir():
        return None
    accumulator = EventAccumulator(str(session_dir(run_dir)))
    accumulator.Reload()
    try:
        contents = accumulator.PluginTagToContent("hparams").values()
    except KeyError:  # no HPARAMS summary at all
        return None
    status = None
    for raw in contents:
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_end_info"):
            status = api_pb2.Status.Name(data.session_end_info.status)
    return status


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in a run directory's TensorBoard events, as (step, value) lists."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_image_tags(run_dir: Path) -> list[str]:
    """The image tags (figures) in a run directory's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator.Tags()["images"]


def read_hparams(run_dir: Path) -> tuple[dict, list[str]]:
    """The hyperparameters and declared metric names of a run's HPARAMS summary (in its session's sub-run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from rnnlab.app.hparams import session_dir

    accumulator = EventAccumulator(str(session_dir(run_dir)))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")
    hparams, metrics = {}, []
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            for key, value in data.session_start_info.hparams.items():
                hparams[key] = value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        if data.HasField("experiment"):
            metrics = [m.name.tag for m in data.experiment.metric_infos]
    return hparams, metrics


def recipe_code(title: str) -> str:
    """The first python block of the docs/development.md section ``title`` (a recipe that a test follows)."""
    section = (ROOT / "docs" / "development.md").read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])


FIXTURES = Path(__file__).parent / "fixtures"


def pause_env(root: Path, pause: Path | None = None, at: str | None = None) -> dict[str, str]:
    """``cli_env(root)`` with tests/fixtures importable and, where ``pause`` is given, the pausing callback's
    marker file and point (tests/fixtures/pausing.py)."""
    env = {**cli_env(root), "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")])}
    env.pop("RNNLAB_TEST_PAUSE", None)
    if pause is not None:
        env.update(RNNLAB_TEST_PAUSE=str(pause), RNNLAB_TEST_PAUSE_AT=str(at or ""))
    return env


def start_script(script: str, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen:
    """``src/<script> args`` started in a session of its own (a terminal's Ctrl-C goes to its process group)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for a started command; what it printed and its exit code."""
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    """Wait until ``marker`` exists (a test callback holds the process there); fails with its stderr if the
    process ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, finish(process).stderr[-3000:]
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.1)


def interrupt_at(args: list[str], root: Path, point: str) -> subprocess.CompletedProcess:
    """Run ``src/train.py args`` (with ``+callbacks.pause._target_=pausing.PauseAt``) until the pausing callback
    (tests/fixtures/pausing.py) holds it at ``point``, then Ctrl-C its process group, as a terminal does."""
    marker = root / "paused"
    env = {**cli_env(root), "PYTHONPATH": str(FIXTURES), "RNNLAB_TEST_PAUSE": str(marker)}
    env["RNNLAB_TEST_PAUSE_AT"] = point
    process = start_script("train.py", args, env)
    try:
        wait_for(marker, process)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    marker.unlink(missing_ok=True)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (a rewritten file shows)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def assert_refused(result, root: Path, before: dict, *needles: str) -> str:
    """A refused command: a non-zero exit, one ``error:`` line holding ``needles``, and ``root`` untouched."""
    assert result.returncode != 0, result.stdout[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert tree(root) == before, sorted(set(tree(root)) ^ set(before))
    return lines[0]
