"""Building the sweep's sampler and pruner from their configs; the samplers offered as config groups.

``SAMPLERS`` is the one list of samplers: each ``register_sampler`` call makes ``hydra/sweeper/sampler=<name>`` a
choice and puts the name in every message that lists the allowed samplers. Any other Optuna sampler can still
be given by ``hydra.sweeper.sampler._target_``. Optuna is imported lazily: Hydra imports this module on every run.
"""

from __future__ import annotations

import importlib.util
from dataclasses import astuple, dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate

from rnnlab.console import SWEEP, say
from rnnlab.errors import CommandError, first_line
from rnnlab.registry import Registry

SAMPLER_GROUP = "hydra/sweeper/sampler"


class SweepOptionError(CommandError, ValueError):
    """A ``hydra.sweeper.*`` value that is not allowed (one line)."""


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler offered as ``hydra/sweeper/sampler=<name>``.

    ``node``: its config (``_target_`` and defaults); ``needs``: packages Optuna imports only once sampling starts
    (checked before the study is touched); ``grid``: it samples a finite grid, so every key must be a
    ``choice()`` or ``range()`` and ``n_trials`` is capped at the grid's size; ``takes_grid``: the sweeper hands
    it that grid as ``search_space`` (Optuna's ``GridSampler``).
    """

    node: dict[str, Any]
    needs: tuple[str, ...] = ()
    grid: bool = False
    takes_grid: bool = False

    @property
    def target(self) -> str:
        return str(self.node["_target_"])


# Hydra's plugin scan runs the code of this module again (in the same module) when it was imported before: the
# registry is kept, so a sampler registered before the scan stays registered.
SAMPLERS: Registry[SamplerSpec] = globals().get("SAMPLERS") or Registry(SAMPLER_GROUP)


def register_sampler(
    name: str, node: dict[str, Any], needs: tuple[str, ...] = (), grid: bool = False, takes_grid: bool = False
) -> SamplerSpec:
    """Offer a sampler as ``hydra/sweeper/sampler=<name>`` (before Hydra composes the config)."""
    spec = SamplerSpec(dict(node), tuple(needs), grid, takes_grid)
    if name not in SAMPLERS or astuple(SAMPLERS.get(name)) != astuple(spec):  # the same again: the scan's rerun
        SAMPLERS.register(name)(spec)
    ConfigStore.instance().store(group=SAMPLER_GROUP, name=name, node=spec.node, provider="rnnlab")
    return spec


register_sampler("tpe", {"_target_": "optuna.samplers.TPESampler", "seed": None, "n_startup_trials": 5})
register_sampler("random", {"_target_": "optuna.samplers.RandomSampler", "seed": None})
# Every combination of choice()/range() params once, in random order (small grids, designed tests).
register_sampler("brute_force", {"_target_": "optuna.samplers.BruteForceSampler", "seed": None}, grid=True)
# The grid of the choice()/range() params (the sweeper hands it the search space).
register_sampler("grid", {"_target_": "optuna.samplers.GridSampler", "seed": None}, grid=True, takes_grid=True)
register_sampler("cmaes", {"_target_": "optuna.samplers.CmaEsSampler", "seed": None}, needs=("cmaes",))
register_sampler("nsgaii", {"_target_": "optuna.samplers.NSGAIISampler", "seed": None, "population_size": 50})
# Imports torch in the sweep's process.
register_sampler("gp", {"_target_": "optuna.samplers.GPSampler", "seed": None}, needs=("torch", "scipy"))
register_sampler("qmc", {"_target_": "optuna.samplers.QMCSampler", "seed": None, "qmc_type": "sobol"})


def spec_of(conf: dict[str, Any] | None) -> tuple[str, SamplerSpec]:
    """(group name, spec) of a sampler config, found by its ``_target_`` (a sampler given only by ``_target_``:
    its class name and a spec with no needs and no grid)."""
    target = str((conf or {}).get("_target_", ""))
    for name in SAMPLERS:
        if SAMPLERS.get(name).target == target:
            return name, SAMPLERS.get(name)
    return target.rsplit(".", 1)[-1], SamplerSpec({"_target_": target})


def missing_package(spec: SamplerSpec) -> str | None:
    return next((package for package in spec.needs if importlib.util.find_spec(package) is None), None)


def allowed_samplers(without: str | None = None) -> str:
    """The samplers of ``hydra/sweeper/sampler``, each with the packages it needs (``without``: those that do
    not need that package)."""
    shown = []
    for name in SAMPLERS:
        needs = SAMPLERS.get(name).needs
        if without is None:
            plural = "s" if len(needs) > 1 else ""
            shown.append(f"{name} (needs the {' and '.join(needs)} package{plural})" if needs else name)
        elif without not in needs:
            shown.append(name)
    return ", ".join(shown)


def build_sampler(conf: dict[str, Any] | None, distributions: dict[str, Any]) -> Any:
    """The sampler (None: Optuna's default); a grid sampler gets the grid of the discrete params (only those
    are allowed). Raises ``SweepOptionError`` (one line) when it cannot be built."""
    if not conf:
        return None
    name, spec = spec_of(conf)
    needed = missing_package(spec)
    if needed is not None:  # Optuna imports it only when sampling: refused before the study is touched
        raise SweepOptionError(
            f"hydra.sweeper.sampler {spec.target!r} cannot be built: it needs the {needed} package "
            f"(pip install {needed}); allowed without it: {allowed_samplers(without=needed)}"
        )
    extra = {}
    if spec.grid:  # every key a choice() or a range()
        grid = {key: grid_values(key, distribution, name) for key, distribution in distributions.items()}
        if spec.takes_grid:
            extra["search_space"] = grid
    try:
        sampler = instantiate(conf, **extra)
        return sampler(**extra) if callable(sampler) and not hasattr(sampler, "sample_relative") else sampler
    except Exception as error:
        cause = error.__cause__ or error
        raise SweepOptionError(
            f"hydra.sweeper.sampler {spec.target!r} cannot be built: {first_line(cause)}; allowed: an Optuna "
            f"sampler ({SAMPLER_GROUP}={allowed_samplers()})"
        ) from None


def build_pruner(conf: dict[str, Any] | None, n_objectives: int) -> tuple[Any, dict[str, Any] | None]:
    """(the pruner, the config trials rebuild it from): none for several objectives (Optuna prunes
    single-objective studies only), with one line when one was asked for."""
    import optuna

    if n_objectives > 1:
        if conf and "NopPruner" not in str(conf.get("_target_")):
            say(
                prefix=SWEEP,
                message=f"{n_objectives} objectives: pruning is off (Optuna prunes single-objective studies)",
            )
        return optuna.pruners.NopPruner(), None
    return (instantiate(conf) if conf else None), conf


def grid_values(key: str, distribution: Any, sampler: str = "grid") -> list:
    """The points of one key's search space, for a grid sampler named ``sampler``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = round((distribution.high - distribution.low) / distribution.step) + 1
        return [distribution.low + i * distribution.step for i in range(count)]
    raise SweepOptionError(
        f"{SAMPLER_GROUP}={sampler} cannot search {key}: a grid needs choice(...) or range(...), not an interval"
    )


def grid_size(conf: dict[str, Any] | None, distributions: dict[str, Any]) -> int | None:
    """How many points a grid sampler can try (None: not a grid sampler, or not finite)."""
    if not conf or not spec_of(conf)[1].grid:
        return None
    size = 1
    for key, distribution in distributions.items():
        try:
            size *= len(grid_values(key, distribution))
        except SweepOptionError:
            return None
    return size
