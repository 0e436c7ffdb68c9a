"""The documents' placeholders filled from a document's scratch root (tests/doc_runner.py).

``<run dir>``, ``...`` and ``logs/...`` in a checkpoint path: the latest run of the kind the command needs
(a resume: an interrupted run; generate: a sine run, or a text run when it gives a prompt; eval: any
completed training run), made here, tiny, when no earlier command of the document made one. ``3f2a`` /
``9c01``: the ids of the two latest runs. ``<logdir>`` and ``<task>/<timestamp>``: the latest compare
sweep; ``<tmp>``, ``~/book.txt``, ``<name>`` and ``<s>`` likewise. A placeholder left unfilled fails the
command (mark it or teach this).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from doc_commands import ROOT
from doc_runner import records

RUN_DIR = r"(?:<run dir>|logs/\.\.\.|\.\.\.|logs/[\w./-]+?)"
CKPT = re.compile(r"\b(ckpt_path|ckpt)=(" + RUN_DIR + r"(?:/checkpoints)?/[\w.-]+\.ckpt|\.\.\.|<run dir>\S*)")
PAUSE = "doc_pause.PauseAfterFirstEpoch"  # tests/doc_pause.py
FIXED = {
    "model=<name>": "model=gru",  # development.md: a new cell's or task's check, with an existing one
    "data=<name>": "data=sine",
    "seed=<s>": "seed=0",
}


def fill(text: str, root: Path) -> str:
    """``text`` with its placeholders filled from ``root``."""
    text = re.sub(r"\s\[[^\]]*\]", "", text)  # [--optional] parts
    text = re.sub(r'(ARGS=")\.\.\."', r'\1"', text)  # make runs ARGS="..."
    text = re.sub(r"\s\.\.\.(?=\s|$)", "", text)  # a bare ... : anything more
    for placeholder, value in FIXED.items():
        text = text.replace(placeholder, value)
    text = text.replace("<tmp>", str(_mkdir(root / "tmp")))
    if "~/book.txt" in text:
        book = root / "book.txt"
        book.write_text("\n".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))))
        text = text.replace("~/book.txt", str(book))
    if "<logdir>" in text:  # any log directory: the latest compare sweep, else logs/
        text = text.replace("<logdir>", "multirun/compare/<task>/<timestamp>" if _compares(root) else "logs")
    text = re.sub(r"multirun/compare/(?:<task>|mnist1d)/<timestamp>", lambda _: _latest_compare(root), text)
    text = CKPT.sub(lambda match: f"{match.group(1)}={_checkpoint(text, match.group(2), root)}", text)
    if re.search(r"\b(3f2a|9c01)\b", text):
        ids = [record["id"][:8] for record in records(root) if record.get("kind") == "train"]
        while len(ids) < 2:
            tiny_run(root, "model=gru")
            ids = [record["id"][:8] for record in records(root) if record.get("kind") == "train"]
        text = re.sub(r"\b3f2a\b", ids[-1], re.sub(r"\b9c01\b", ids[-2], text))
    left = re.search(r"<[^<>]*[a-z][^<>]*>", text)
    if left and "->" not in left.group(0):
        raise ValueError(f"placeholder {left.group(0)} has no value here: mark the command or fill it")
    return text


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compares(root: Path) -> list[Path]:
    return sorted((root / "multirun" / "compare").glob("*/*/"), key=os.path.getmtime)


def _latest_compare(root: Path) -> str:
    found = _compares(root)
    if not found:
        raise ValueError("no compare sweep in this document's root before this command")
    return str(found[-1].relative_to(root))


def _checkpoint(text: str, given: str, root: Path) -> str:
    """The checkpoint a command's ``ckpt_path=`` / ``ckpt=`` stands for (see the module docstring)."""
    resume = "src/train.py" in text
    if not resume and "<" not in given and "..." not in given:
        path = root / given
        if path.exists():
            return given
        best = sorted(path.parent.glob("best-*.ckpt"))  # best-epochNNN: its epoch differs at a tiny budget
        if best:
            return str(best[-1].relative_to(root))
    data = None
    if "generate.py" in text or "make generate" in text:
        data = "text_char" if "prompt=" in text else "sine"
    status = "interrupted" if resume else "completed"

    def wanted() -> list[dict]:
        return [
            r
            for r in records(root)
            if r.get("kind") == "train" and not r.get("parent") and r.get("status") == status
            if data is None or _data(r) == data
        ]

    runs = wanted()
    if not runs:
        interrupted_run(root) if resume else tiny_run(root, f"data={data}" if data else "model=gru")
        runs = wanted()
    last = Path(runs[-1]["dir"]) / "checkpoints" / Path(given).name
    if not last.exists():
        last = last.parent / "last.ckpt"
    return str(last)


def _data(record: dict) -> str | None:
    task = record.get("task") or ""
    return "text_char" if task.startswith("text") else task


def tiny_run(root: Path, *overrides: str) -> None:
    """A tiny training run in ``root`` (RNNLAB_BUDGET=tiny) for a placeholder no earlier command filled."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *overrides],
        cwd=root,
        env={**os.environ, "RNNLAB_ROOT": str(root), "RNNLAB_BUDGET": "tiny"},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"the placeholder's run failed: {done.stderr[-2000:]}")


def interrupted_run(root: Path) -> None:
    """A GRU run interrupted (SIGINT) after its first epoch, to resume: held there by tests/doc_pause.py."""
    marker = root / "tmp" / "paused"
    _mkdir(marker.parent)
    marker.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), "model=gru", f"+callbacks.pause._target_={PAUSE}"],
        cwd=root,
        env={**os.environ, "RNNLAB_ROOT": str(root), "RNNLAB_TEST_PAUSE": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(subprocess.signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if not marker.exists():
        raise RuntimeError(f"the run to resume did not reach its first epoch's end: {err[-2000:]}")
