"""Start-up: wall seconds from launching ``python src/train.py`` to the first training step, and what the
commands that never train cost (``--help``, a config error), against importing torch + Lightning alone.

The first step is stamped by a callback added from the command line (``+callbacks.first_step_clock``);
the run trains that one batch (default config otherwise: TensorBoard, checkpoints, callbacks).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("command", "wall s (median)", "vs import torch + lightning")
STAMP_ENV = "RNNLAB_BENCH_FIRST_STEP_FILE"


class FirstStepClock(pl.Callback):
    """Writes the wall clock (``time.time()``) at the start of the first training batch to
    $RNNLAB_BENCH_FIRST_STEP_FILE."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        path = Path(os.environ[STAMP_ENV])
        if not path.exists():
            path.write_text(repr(time.time()))


def _timed(command: list[str], env: dict, expect_ok: bool = True) -> float:
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if expect_ok and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.time() - start


def _first_step(env: dict, stamp: Path, data_dir: Path) -> float:
    stamp.unlink(missing_ok=True)
    command = [
        sys.executable,
        "src/train.py",
        "+callbacks.first_step_clock._target_=startup.FirstStepClock",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "test=false",
        f"paths.data_dir={data_dir}",
    ]
    start = time.time()
    _timed(command, env)
    return float(stamp.read_text()) - start


def run(repeats: int = 3) -> list[tuple]:
    """Rows of COLUMNS: median wall seconds over ``repeats`` of each command."""
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="rnnlab-startup-") as tmp:
        stamp, data_dir = Path(tmp) / "first_step", Path(tmp) / "data"
        env = {
            **os.environ,
            "RNNLAB_ROOT": tmp,
            STAMP_ENV: str(stamp),
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]),
        }
        _first_step(env, stamp, data_dir)  # generates the MNIST-1D cache; warms the file cache
        measures = {
            "python -c 'import torch, pytorch_lightning'": lambda: _timed(
                [python, "-c", "import torch, pytorch_lightning"], env
            ),
            "python src/train.py --help": lambda: _timed([python, "src/train.py", "--help"], env),
            "python src/train.py model=nope (config error)": lambda: _timed(
                [python, "src/train.py", "model=nope"], env, False
            ),
            "python src/train.py → first training step": lambda: _first_step(env, stamp, data_dir),
        }
        seconds = {name: statistics.median(measure() for _ in range(repeats)) for name, measure in measures.items()}
    baseline = next(iter(seconds.values()))
    return [(name, s, s / baseline) for name, s in seconds.items()]


def markdown(rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, seconds, ratio in rows:
        lines.append(f"| `{name}` | {seconds:.2f} | {ratio:.2f}× |")
    return "\n".join(lines)
