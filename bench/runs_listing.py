"""Listing speed: wall seconds of ``rnnlab runs --limit 20`` over 1,000 run records, against the command's own
start-up (listing an empty directory: the same imports, no records; and ``--help``). Goal: at most 2×.

Records are made with the record API once, then copied with new ids, params and metrics into run
directories laid out as training makes them (``logs/<task>/<run name>/seed<n>/version_0`` with checkpoints/,
.hydra/ and a TensorBoard events file), so the walk skips what it would skip in a real ``logs/``.

``python bench/runs_listing.py [--records 1000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's rnnlab, also when run from another directory

from rnnlab.budget import capped  # noqa: E402
from rnnlab.runs import RunRecord  # noqa: E402
from rnnlab.runs.atomic import write_json_atomic  # noqa: E402

COLUMNS = ("command", "wall s (median)", "vs empty listing")
CELLS = ("vanilla", "gru", "lstm")


def make_records(root: Path, count: int, seed: int = 0) -> None:
    """``count`` completed training runs under ``root/logs`` with ~40 params and 6 metrics each: one record
    written by ``RunRecord`` (the real field set), copied with new ids, params and metrics."""
    rng = random.Random(seed)
    template_dir = root / "template"
    RunRecord.start(
        template_dir, kind="train", name="t", task="mnist1d", command=[], overrides=[], params={}, cwd=root
    ).finish("completed")
    base = json.loads((template_dir / "run.json").read_text())
    start = datetime.now(timezone.utc) - timedelta(days=30)
    for number in range(count):
        cell, hidden, seed_ = rng.choice(CELLS), rng.choice((8, 32, 64, 128)), number % 5
        name = f"{cell}-builtin-h{hidden}"
        overrides = [f"model={cell}", f"model.hidden_size={hidden}", f"seed={seed_}"]
        params = {f"model.{key}": value for key, value in (("cell", cell), ("hidden_size", hidden))}
        params.update({"model.optimizer.lr": round(rng.uniform(1e-4, 1e-2), 6), "seed": seed_})
        params.update({f"trainer.option_{i}": i for i in range(20)})
        params.update({f"data.option_{i}": f"value{i}" for i in range(16)})
        started = start + timedelta(minutes=number)
        run_dir = root / "logs" / "mnist1d" / name / f"seed{seed_}" / f"version_{number}"
        for sub in ("checkpoints", ".hydra"):
            (run_dir / sub).mkdir(parents=True)
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"\0" * 64)
        (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (run_dir / "events.out.tfevents.0.host.1.0").write_bytes(b"\0" * 64)
        acc = rng.uniform(0.3, 0.99)
        record = {
            **base,
            "id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
            "name": name,
            "dir": str(run_dir),
            "command": [sys.executable, "src/train.py", *overrides],
            "overrides": overrides,
            "started": started.isoformat(timespec="milliseconds"),
            "ended": (started + timedelta(seconds=50)).isoformat(timespec="milliseconds"),
            "heartbeat": (started + timedelta(seconds=50)).isoformat(timespec="milliseconds"),
            "duration_s": 50.0,
            "epoch": 14,
            "params": params,
            "metrics": {
                "val/acc": acc,
                "val/acc_best": acc + 0.01,
                "val/loss": 1 - acc,
                "test/acc": acc - 0.01,
                "test/loss": 1.1 - acc,
                "train/loss": 0.9 - acc,
            },
        }
        write_json_atomic(run_dir / "run.json", record)


def _timed(command: list[str], env: dict, terminal: bool = False) -> float:
    """Wall seconds of ``command``, its output piped away, or written to a pseudo-terminal (``terminal``):
    there the listing is a rich table, piped it is plain text."""
    if not terminal:
        start = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return elapsed
    import pty
    import threading

    controller, terminal_fd = pty.openpty()
    drain = threading.Thread(target=_drain, args=(controller,), daemon=True)
    drain.start()
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, env={**env, "COLUMNS": "250"}, stdout=terminal_fd, stderr=terminal_fd)
        returncode = process.wait()
        elapsed = time.perf_counter() - start
    finally:
        os.close(terminal_fd)
        drain.join(timeout=5)
        os.close(controller)
    if returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed on a terminal (exit code {returncode})")
    return elapsed


def _drain(fd: int) -> None:
    """Read a pseudo-terminal until it closes, so the command never blocks on a full buffer."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # EIO once the other end is closed
        pass


def run(records: int = 1000, repeats: int = 5) -> list[tuple[str, float, float]]:
    """Rows of COLUMNS; the commands are interleaved ``repeats`` times so drifting load hits all alike."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    runs = [sys.executable, "-m", "rnnlab.runs"]
    with tempfile.TemporaryDirectory(prefix="rnnlab-runs-bench-") as tmp:
        full, empty = Path(tmp) / "full", Path(tmp) / "empty"
        empty.mkdir()
        make_records(full, records)
        listing = [*runs, "--dir", str(full), "--limit", "20"]
        commands = {  # name: (command, on a terminal)
            "python -m rnnlab.runs --dir <empty dir>": ([*runs, "--dir", str(empty)], False),
            "python -m rnnlab.runs --help": ([*runs, "--help"], False),
            f"python -m rnnlab.runs --limit 20 ({records:,} records, piped: plain text)": (listing, False),
            f"python -m rnnlab.runs --limit 20 ({records:,} records, terminal: rich table)": (listing, True),
        }
        for command, terminal in commands.values():  # warm the file cache and the bytecode
            _timed(command, env, terminal)
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, (command, terminal) in commands.items():
                seconds[name].append(_timed(command, env, terminal))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    baseline = next(iter(medians.values()))
    return [(name, value, value / baseline) for name, value in medians.items()]


def markdown(rows: list[tuple[str, float, float]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, seconds, ratio in rows:
        lines.append(f"| `{name}` | {seconds:.3f} | {ratio:.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="run records to list (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per command (default 5)")
    args = parser.parse_args(argv)
    records, repeats = capped("bench.records", args.records), capped("bench.repeats", args.repeats)  # RNNLAB_BUDGET
    print(markdown(run(records=records, repeats=repeats)))


if __name__ == "__main__":
    main()
