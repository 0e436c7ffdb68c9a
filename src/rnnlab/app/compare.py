"""Comparing cells on the same budget: the hidden size each cell gets under ``compare.match``.

``conf/experiment/compare_cells.yaml`` sets ``model.hidden_size: ${compare_hidden_size:}``; the resolver
reads the config's ``compare`` block:

- ``match: hidden``: every cell gets ``compare.hidden_size``;
- ``match: params``: each cell gets the hidden size whose model (encoder + readout + head, as built for
  the task) has the parameter count closest to ``compare.target_params`` (ties: the smaller size).
"""

from __future__ import annotations

from omegaconf import DictConfig

from rnnlab.errors import ConfigError, not_allowed

MATCHES = ("hidden", "params")
MAX_HIDDEN = 4096


def count_parameters(task, model_kwargs: dict, hidden_size: int) -> int:
    """Trainable parameters of the model the config would build with ``hidden_size``."""
    from rnnlab.models import build_model

    model = build_model(task, **{**model_kwargs, "hidden_size": hidden_size})
    return model.num_parameters


def hidden_for_params(count, target: int, max_hidden: int = MAX_HIDDEN) -> int:
    """The hidden size h >= 1 whose ``count(h)`` is closest to ``target``; ``count`` must increase with h."""
    if target < 1:
        raise ValueError(f"compare.target_params={target!r} must be a positive integer")
    low, high = 1, max_hidden
    while low < high:  # the smallest h with count(h) >= target (or max_hidden)
        mid = (low + high) // 2
        if count(mid) >= target:
            high = mid
        else:
            low = mid + 1
    candidates = [h for h in (low - 1, low) if h >= 1]
    return min(candidates, key=lambda h: (abs(count(h) - target), h))


_MATCHED: dict[str, int] = {}  # the config is resolved several times per run: search once


def matched_hidden_size(task, model_kwargs: dict, target: int) -> int:
    """The hidden size giving ``model_kwargs`` (cell, impl, readout, ...) on ``task`` about ``target`` parameters."""
    key = repr((task, sorted(model_kwargs.items()), target))
    if key not in _MATCHED:
        _MATCHED[key] = hidden_for_params(lambda h: count_parameters(task, model_kwargs, h), target)
    return _MATCHED[key]


def compare_hidden_size(_root_: DictConfig) -> int:
    """Resolver ``${compare_hidden_size:}``: the hidden size for this run's cell under ``compare.match``."""
    from hydra.utils import instantiate

    compare = _root_.compare
    if compare.match not in MATCHES:
        raise ConfigError(not_allowed("compare.match", compare.match, MATCHES))
    if compare.match == "hidden":
        return int(compare.hidden_size)
    task = instantiate(_root_.data).task
    model_kwargs = {
        key: _root_.model[key] for key in ("cell", "impl", "num_layers", "dropout", "bidirectional", "readout")
    }
    return matched_hidden_size(task, model_kwargs, int(compare.target_params))
