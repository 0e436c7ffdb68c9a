"""What the app's trials are told, from the sweep's config: ``hydra.sweeper.trial_overrides``, ``if_null`` and
``if_cluster``.

The sweeper knows Optuna and Hydra, not the app's keys: an app that wants its trial jobs to learn their trial
(to report to it and be pruned), a folder per trial or a share of the cores writes override templates, e.g.
``++optuna_trial.number={number}`` (rnnlab's are in ``conf/hparams_search/optuna.yaml``). A placeholder that is
a template's whole value is written as a Hydra value (quoted where needed), inside a longer value as it is.
A template is left out of a sweep where a placeholder it names has no value there (``{core_share}`` with a
cluster launcher, ``{first_metric}`` with one objective), or where it is a plain ``key=value`` whose key the
app's config lacks (``logger.tensorboard.save_dir`` with another logger); ``++key=value`` always applies.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from hydra_plugins.rnnlab_sweeper.samplers import SweepOptionError
from hydra_plugins.rnnlab_sweeper.search_space import has_key

PLACEHOLDERS = {
    "number": 0,  # the trial's number in the study
    "storage": "sqlite:///multirun/optuna.db",  # the study's storage URL
    "study_name": "study",
    "pruner": {"_target_": "optuna.pruners.MedianPruner"},  # the pruner's config; null: no pruning
    "sweep_folder": "study",  # the name of the study's sweep directory (its name, or <name>_2 when taken)
    "core_share": 1,  # torch threads for each trial running at once, with a launcher of this machine only
    "first_metric": "objective_0",  # the first objective's metric, in a study of several objectives only
}  # name: an example value (the templates are checked with them)
_PLACEHOLDER = re.compile(r"(?<!\$)\{(\w+)\}")  # {name}, not an interpolation ${...}


class TrialOverrides:
    """The checked templates; ``per_sweep`` and ``per_trial`` fill them in."""

    def __init__(self, templates: Any = None, if_null: Any = None, if_cluster: Any = None) -> None:
        def plain(value: Any) -> Any:
            # Hydra resolved the sweeper's config once already: an escaped \${...} is left for the trial job.
            return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value

        self.templates, self.if_null = plain(templates) or [], plain(if_null) or {}
        self.if_cluster = plain(if_cluster) or []

    def check(self) -> None:
        """Raise ``SweepOptionError`` (one line) for a template that is not a Hydra override or names an unknown
        placeholder, before anything runs."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if not isinstance(self.templates, list):
            _refuse("trial_overrides", self.templates, "a list of override templates")
        if not isinstance(self.if_null, dict) or not all(isinstance(v, list) for v in self.if_null.values()):
            _refuse("if_null", self.if_null, "a mapping of keys to lists of override templates")
        if not isinstance(self.if_cluster, list):
            _refuse("if_cluster", self.if_cluster, "a list of override templates")
        parser = OverridesParser.create()
        named = [(f"trial_overrides[{i}]", t) for i, t in enumerate(self.templates)]
        named += [(f"if_null.{key}[{i}]", t) for key, group in self.if_null.items() for i, t in enumerate(group)]
        named += [(f"if_cluster[{i}]", t) for i, t in enumerate(self.if_cluster)]
        for where, template in named:
            if not isinstance(template, str):
                _refuse(where, template, "an override template (a string)")
            unknown = [name for name in _PLACEHOLDER.findall(template) if name not in PLACEHOLDERS]
            if unknown:
                _refuse(where, template, f"placeholders: {', '.join('{' + name + '}' for name in PLACEHOLDERS)}")
            try:
                (override,) = parser.parse_overrides([_fill(template, PLACEHOLDERS) or ""])
            except Exception as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                _refuse(where, template, f"a Hydra override ({reason})")
            if override.is_sweep_override():
                _refuse(where, template, "one value per trial, not a sweep")

    def per_sweep(self, config: DictConfig, values: dict[str, Any], on_cluster: bool = False) -> list[str]:
        """The same for every trial: the ``if_null`` overrides for the keys the app's config leaves null, and the
        ``if_cluster`` ones where the trials run on a cluster (``on_cluster``)."""
        lines = _applying(config, self.if_cluster, values) if on_cluster else []
        for key, group in self.if_null.items():
            if has_key(config, key) and OmegaConf.select(config, key, throw_on_resolution_failure=False) is None:
                lines += _applying(config, group, values)
        return lines

    def per_trial(self, config: DictConfig, values: dict[str, Any]) -> list[str]:
        """The ``trial_overrides`` of one trial (``values``: the placeholders with a value in this sweep)."""
        return _applying(config, self.templates, values)


def _applying(config: DictConfig, templates: list[str], values: dict[str, Any]) -> list[str]:
    lines = []
    for template in templates:
        line = _fill(template, values)
        key = template.partition("=")[0]
        if line is not None and (key.startswith(("+", "~")) or has_key(config, key)):
            lines.append(line)
    return lines


def _fill(template: str, values: dict[str, Any]) -> str | None:
    """The template with its placeholders filled in; None when one has no value."""
    from rnnlab.sweep.results import override_value

    if any(name not in values for name in _PLACEHOLDER.findall(template)):
        return None
    key, equals, value = template.partition("=")
    whole = _PLACEHOLDER.fullmatch(value) if equals else None
    if whole:  # the whole value: written as a Hydra value
        return f"{key}={override_value(values[whole.group(1)])}"
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def _refuse(where: str, value: Any, allowed: str) -> NoReturn:
    raise SweepOptionError(f"hydra.sweeper.{where}={value!r} is not allowed; allowed: {allowed}")
