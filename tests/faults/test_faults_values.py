"""Faults: values a command can only reject after reading something (data sizes, a checkpoint's weights).

Each row is refused in one ``error:`` line before anything is written, as a value checked in the config is:
nothing is left under the command's RNNLAB_ROOT (no run directory, no ``eval``/``generate`` version).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ROOT, TINY, assert_refused, run_clis, tree

SIZES_TOO_BIG = [
    (["data.val_size=100000"], ["data.val_size=100000", "smaller than the 4000 training samples"]),
    (["data=sine", "data.series_len=50"], ["data.series_len=50 is too short", "data.series_len >= 51"]),
    (
        ["data=sine", "data.stateful=true", "data.batch_size=1000"],
        ["data.series_len=20000 is too short", "data.batch_size=1000 streams", "data.series_len >= 50001"],
    ),
    # refused when the corpus is read, after the seed is set: Lightning's "Seed set to 42" must not come first
    (["data=text_char", "data.seq_len=100000000"], ["data.seq_len=100000000", "is too short"]),
]


@pytest.fixture(scope="module")
def refused_sizes(tmp_path_factory) -> list[tuple[object, Path]]:
    roots = [tmp_path_factory.mktemp("size") for _ in SIZES_TOO_BIG]
    results = run_clis([("train.py", [*TINY, *overrides], root) for (overrides, _), root in zip(SIZES_TOO_BIG, roots)])
    return list(zip(results, roots))


@pytest.mark.parametrize("row", range(len(SIZES_TOO_BIG)), ids=[" ".join(o) for o, _ in SIZES_TOO_BIG])
def test_a_data_size_the_data_cannot_hold_is_refused_before_any_run_directory(refused_sizes, row):
    result, root = refused_sizes[row]
    assert_refused(result, root, {}, *SIZES_TOO_BIG[row][1])
    assert result.stdout.strip() == "", result.stdout  # only the error line, nothing before it


def legacy_runs(root: Path) -> Path:
    """The stored MNIST-1D and sine runs (tests/fixtures/legacy_runs) copied to ``root/logs``."""
    shutil.copytree(ROOT / "tests" / "fixtures" / "legacy_runs", root / "logs")
    return root / "logs"


FOREIGN_CHECKPOINT = [("eval.py", "ckpt_path"), ("generate.py", "ckpt")]
SERIES_SAMPLING = ["temperature=-1", "top_k=0", "temperature=nan"]


@pytest.fixture(scope="module")
def refused_checkpoint_commands(tmp_path_factory) -> dict[str, tuple[object, Path, dict]]:
    """(result, RNNLAB_ROOT, its tree before) by case: a sine run's checkpoint copied into an MNIST-1D run's
    ``checkpoints/`` and given to eval and generate; a sine run given each of SERIES_SAMPLING."""
    cases = {}
    for script, key in FOREIGN_CHECKPOINT:
        root = tmp_path_factory.mktemp("foreign")
        logs = legacy_runs(root)
        foreign = logs / "mnist1d" / "checkpoints" / "sine.ckpt"
        shutil.copy(logs / "sine" / "checkpoints" / "last.ckpt", foreign)
        cases[script] = (script, [f"{key}={foreign}"], root)
    for argument in SERIES_SAMPLING:
        root = tmp_path_factory.mktemp("sampling")
        ckpt = legacy_runs(root) / "sine" / "checkpoints" / "last.ckpt"
        cases[argument] = ("generate.py", [f"ckpt={ckpt}", argument], root)
    before = {case: tree(root) for case, (_, _, root) in cases.items()}
    results = run_clis(list(cases.values()))
    return {case: (result, cases[case][2], before[case]) for case, result in zip(cases, results)}


@pytest.mark.parametrize("script, key", FOREIGN_CHECKPOINT)
def test_a_checkpoint_of_another_run_copied_into_a_run_is_refused(refused_checkpoint_commands, script, key):
    result, root, before = refused_checkpoint_commands[script]
    foreign = root / "logs" / "mnist1d" / "checkpoints" / "sine.ckpt"
    assert_refused(result, root, before, f"{key}='{foreign}'", "does not hold the weights", "mnist1d/config.yaml")


@pytest.mark.parametrize("argument", SERIES_SAMPLING)
def test_a_bad_sampling_argument_is_refused_for_a_series_run_too(refused_checkpoint_commands, argument):
    result, root, before = refused_checkpoint_commands[argument]
    assert_refused(result, root, before, f"{argument} is not allowed")
