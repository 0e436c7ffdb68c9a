"""Shared fixtures: small composed configs (the real conf/ tree), one MNIST-1D cache per session.

Helpers (the tiny budget, the CLI runner, TensorBoard readers) are in ``helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from helpers import TINY, compose_config
from rnnlab.app.setup import register_resolvers

register_resolvers()


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
