"""The search space: Hydra sweep syntax -> Optuna distributions, checked before any trial runs.

``choice(a, b)`` -> categorical; ``range(a, b[, step])`` -> integers (or floats) from a to b, b excluded as in
Hydra and Python (the published hydra-optuna-sweeper includes b); ``shuffle(range(...))`` -> a categorical of
those values (as published); ``interval(a, b)`` -> a float, an integer when both ends are; ``tag(log, ...)``
on an interval -> log scale. Every mistake is a ``SearchSpaceError`` of one line naming the override and what
is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import CommandError

SEARCH_TAGS = {"log"}
SYNTAX = (
    "choice(a, b, ...), range(a, b[, step]), shuffle(range(...)), interval(a, b), int(interval(a, b)), "
    "tag(log, interval(a, b))"
)


class SearchSpaceError(CommandError, ValueError):
    """A ``hydra.sweeper.params`` entry or sweep override that cannot become an Optuna distribution (one line)."""


def _refuse(override: Override | str, why: str) -> SearchSpaceError:
    line = override if isinstance(override, str) else override.input_line
    return SearchSpaceError(f"{line!r} is not allowed: {why}")


def distribution_of(override: Override):
    """The Optuna distribution for one sweep override (choice / range / interval, ``tag(log, ...)``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    tags = set(getattr(sweep, "tags", None) or ())
    if tags - SEARCH_TAGS:
        key = override.get_key_element()
        raise SearchSpaceError(
            f"{key}: tag {sorted(tags - SEARCH_TAGS)} is not allowed; allowed: {sorted(SEARCH_TAGS)}"
        )
    log_scale = "log" in tags
    if log_scale and not isinstance(sweep, IntervalSweep):
        raise _refuse(override, "tag(log, ...) needs interval(a, b), not choice(...) or range(...)")
    if isinstance(sweep, ChoiceSweep):
        for choice in sweep.list:
            if not isinstance(choice, (str, int, float, bool)):
                raise _refuse(override, f"choice {choice!r} is not a str, int, float or bool")
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        if any(isinstance(v, float) and not math.isfinite(v) for v in (sweep.start, sweep.stop, sweep.step)):
            raise _refuse(override, "range(a, b, step) needs finite numbers")
        if sweep.step == 0:
            raise _refuse(override, "range(a, b, step) needs step != 0")
        values = list(sweep.range())
        if not values:
            raise _refuse(
                override, "the range is empty (b excluded, as in Python's range); allowed: a < b for step > 0"
            )
        if sweep.shuffle:  # as the published plugin: a set of values without order
            return CategoricalDistribution(values)
        low, high, step = min(values), max(values), abs(sweep.step)
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
            return IntDistribution(low, high, step=step)
        return FloatDistribution(float(low), float(high), step=float(step))
    if isinstance(sweep, IntervalSweep):
        start, end = sweep.start, sweep.end
        if not all(math.isfinite(v) for v in (start, end)):
            raise _refuse(override, "interval(a, b) needs finite a and b")
        if start >= end:
            raise _refuse(
                override, f"interval({start}, {end}) is {'empty' if start == end else 'inverted'}; needs a < b"
            )
        if log_scale and start <= 0:
            raise _refuse(override, f"a log scale needs a > 0, not {start}")
        if isinstance(start, int) and isinstance(end, int):
            return IntDistribution(start, end, log=log_scale)
        return FloatDistribution(float(start), float(end), log=log_scale)
    raise _refuse(override, f"not a search space; allowed: {SYNTAX}")


def parse_overrides(parser: OverridesParser, lines: Iterable[str]) -> list[Override]:
    """Parsed overrides; a line Hydra cannot parse is one ``SearchSpaceError`` naming it."""
    parsed = []
    for line in lines:
        try:
            parsed.extend(parser.parse_overrides([line]))
        except (OverrideParseException, HydraException) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise _refuse(line, f"{reason}; allowed: {SYNTAX}") from None
    return parsed


def split_search_space(parser: OverridesParser, params: dict[str, Any], arguments: list[str]) -> tuple[dict, list]:
    """(distributions by key, fixed override lines): ``params`` first, command-line arguments win."""
    merged: dict[str, Override] = {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    for override in parse_overrides(parser, lines):
        merged[override.get_key_element()] = override
    distributions, fixed = {}, []
    for key, override in merged.items():
        if override.is_sweep_override():
            distributions[key] = distribution_of(override)
        else:
            fixed.append(override.input_line)
    return distributions, fixed


_ABSENT = object()


def missing_keys(config: DictConfig, keys: Iterable[str]) -> list[str]:
    """The swept keys the composed config does not have (``+key`` adds a key, so it is never missing);
    ``group=...`` keys are checked against the config's groups."""
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    missing = []
    for key in keys:
        if key.startswith("+"):
            continue
        if "/" in key or key in choices:
            if key not in choices:
                missing.append(key)
            continue
        if OmegaConf.select(config, key, default=_ABSENT, throw_on_resolution_failure=False) is _ABSENT:
            # also absent when its interpolation does not resolve here: then its parent names it
            parent_key, _, last = key.rpartition(".")
            parent = OmegaConf.select(config, parent_key, default=None, throw_on_resolution_failure=False)
            if not (OmegaConf.is_dict(parent if parent_key else config) and last in (parent or config).keys()):
                missing.append(key)
    return missing


def has_key(config: DictConfig, key: str) -> bool:
    """Whether the composed config has ``key`` (even when its value is an interpolation that cannot resolve here)."""
    return not missing_keys(config, [key])


def custom_search_space(dotpath: str | None) -> Callable[[DictConfig, Any], None] | None:
    """The ``custom_search_space`` callable ``(cfg, trial) -> None`` (as published), or None."""
    if not dotpath:
        return None
    import importlib

    module_name, _, name = dotpath.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), name) if module_name else None
    except ImportError as error:
        reason = f"{type(error).__name__}: {error}"
    except AttributeError:
        reason = f"module {module_name!r} has no {name!r}"
    else:
        if callable(function):
            return function
        reason = "not a module.function path" if function is None else f"{name!r} is not a function"
    raise SearchSpaceError(
        f"hydra.sweeper.custom_search_space={dotpath!r} is not allowed: {reason}; allowed: the dotted path of a "
        "function (cfg, trial) -> None, e.g. my_module.configure"
    )
