"""Faults of the command line itself: overrides Hydra's grammar accepts but no run can use. Each ends in one
``error:`` line naming the override and what is allowed, exit code 1, nothing written."""

from __future__ import annotations

import pytest

from helpers import run_clis

ROWS = [
    ("=3", "error: '=3' has no key; give key=value"),
    ("~model", "error: ~model is not allowed: every run needs a model config; choose one with model=<name> (allowed: "),
    ("model.hiden=3", "error: model.hiden=3: model has no key 'hiden'; its keys: "),
]


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    roots = [tmp_path_factory.mktemp("root") for _ in ROWS]
    results = run_clis([("train.py", [override], root) for (override, _), root in zip(ROWS, roots, strict=True)])
    return dict(zip([override for override, _ in ROWS], zip(results, roots, strict=True), strict=True))


@pytest.mark.parametrize("override, start", ROWS, ids=[override for override, _ in ROWS])
def test_an_override_no_run_can_use_is_one_line(refused, override, start):
    result, root = refused[override]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith(start), result.stderr[-3000:]
    assert list(root.iterdir()) == []  # no run directory, no logs/


def test_an_unknown_key_lists_the_keys_of_its_section_and_how_to_add_it(refused):
    (line,) = refused["model.hiden=3"][0].stderr.strip().splitlines()
    assert "hidden_size" in line and "num_layers" in line and line.endswith("or add one with +model.hiden=3")
