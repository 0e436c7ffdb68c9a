"""Config helpers: OmegaConf resolvers, early validation, the saved run config.

Light on purpose (no torch at import): ``src/train.py`` imports it before Hydra composes anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from numbers import Real
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

RUN_CONFIG = "config.yaml"  # the resolved config, saved in every run directory


class CommandError(Exception):
    """An error whose one-line message says all a user needs: the command prints it alone (no traceback)."""


class ConfigError(CommandError, ValueError):
    """A config value that is not allowed; the message is one line naming it and what is allowed."""


# ------------------------------------------------------------------------------------------- run dirs


def run_dir_of_checkpoint(ckpt_path: str) -> Path:
    """``<run dir>/checkpoints/<name>.ckpt`` -> ``<run dir>``."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    if not ckpt.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is not a file; give a checkpoint such as <run dir>/checkpoints/last.ckpt"
        )
    if ckpt.parent.name != "checkpoints" or not (ckpt.parent.parent / RUN_CONFIG).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is not inside a run directory "
            f"(<run dir>/checkpoints/*.ckpt beside <run dir>/{RUN_CONFIG})"
        )
    return ckpt.parent.parent


def next_version(parent: str | Path) -> Path:
    """``<parent>/version_<n>`` with n one past the highest existing version: runs are never overwritten."""
    parent = Path(parent)
    taken = [int(p.name[8:]) for p in parent.glob("version_*") if p.name[8:].isdigit()]
    return parent / f"version_{max(taken, default=-1) + 1}"


def _run_dir(ckpt_path: str | None, runs_dir: str) -> str:
    """Hydra's run dir: a resumed run continues in its own directory, a new run gets a new version."""
    return str(run_dir_of_checkpoint(ckpt_path) if ckpt_path else next_version(runs_dir))


def _beside_run(ckpt_path: str, kind: str) -> str:
    """``<run dir>/<kind>/version_<n>``: where eval and generation outputs of a checkpoint go."""
    return str(next_version(run_dir_of_checkpoint(ckpt_path) / kind))


def prepare_entry_point() -> None:
    """What every ``src/*.py`` entry point does before Hydra composes: the repository root for
    ``paths.root_dir`` (unless RNNLAB_ROOT is set) and the resolvers ``conf/`` uses."""
    os.environ.setdefault("RNNLAB_ROOT", str(Path(__file__).resolve().parents[2]))
    register_resolvers()


def register_resolvers() -> None:
    """Resolvers used by conf/hydra (cached: Hydra may read the run dir more than once)."""
    for name, resolver in (("run_dir", _run_dir), ("beside_run", _beside_run)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
    if not OmegaConf.has_resolver("compare_hidden_size"):  # conf/experiment/compare_cells.yaml
        OmegaConf.register_new_resolver("compare_hidden_size", _compare_hidden_size)


def _compare_hidden_size(*, _root_: DictConfig) -> int:
    from rnnlab.compare import compare_hidden_size  # torch is imported only when a config uses it

    return compare_hidden_size(_root_)


def compose_run_config(
    overrides: Iterable[str] = (),
    output_dir: str | Path = "run",
    data_dir: str | Path | None = None,
    config_name: str = "train",
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides`` as the command line would, for use in Python
    (tests, benchmarks): the run writes into ``output_dir``, MNIST-1D is cached in ``data_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    register_resolvers()
    GlobalHydra.instance().clear()
    conf_dir = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} interpolations resolve
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        if data_dir is not None:
            cfg.paths.data_dir = str(data_dir)
        del cfg.hydra
    return cfg


# ------------------------------------------------------------------------------------------- validation


def _one_of(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = sorted(allowed)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {', '.join(allowed)}")


def _number(
    key: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    low_inclusive: bool = False,
    high: float | None = None,
) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, Real)
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key}={value!r} is not allowed; must be {kind}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ConfigError(f"{key}={value!r} is not allowed; must be {'>=' if low_inclusive else '>'} {low}")
    if high is not None and value >= high:
        raise ConfigError(f"{key}={value!r} is not allowed; must be < {high}")


TEST_CHECKPOINTS = ("best", "last")  # what train.py tests after fitting (conf/train.yaml test_ckpt)


def validate(cfg: DictConfig) -> None:
    """Check the values users most often get wrong, before anything is built or written."""
    from rnnlab.devices import check_trainer
    from rnnlab.encoders import CELLS, ENCODERS
    from rnnlab.models import READOUTS

    model = cfg.model
    _one_of("model.cell", model.cell, CELLS)
    _one_of("model.impl", model.impl, ENCODERS.names())
    _one_of("model.readout", model.readout, READOUTS.names())
    _number("model.hidden_size", model.hidden_size, integer=True, low=0)
    _number("model.num_layers", model.num_layers, integer=True, low=0)
    _number("model.dropout", model.dropout, low=0, low_inclusive=True, high=1)
    _number("model.readout_dropout", model.get("readout_dropout", 0.0), low=0, low_inclusive=True, high=1)
    _number("model.label_smoothing", model.get("label_smoothing", 0.0), low=0, low_inclusive=True, high=1)
    _number("model.optimizer.lr", model.optimizer.lr, low=0)
    _number("model.optimizer.weight_decay", model.optimizer.get("weight_decay", 0.0), low=0, low_inclusive=True)
    _number("data.batch_size", cfg.data.batch_size, integer=True, low=0)
    _number("trainer.max_epochs", cfg.trainer.max_epochs, integer=True, low=0)
    _one_of("test_ckpt", cfg.get("test_ckpt", "best"), TEST_CHECKPOINTS)
    check_trainer(cfg.trainer)


class ValidateConfig(Callback):
    """Hydra callback: validate before Hydra creates the run directory, so a rejected run writes nothing.

    Hydra turns exceptions raised in callbacks into warnings, hence the explicit exit.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            for key in ("ckpt_path", "ckpt"):  # train/eval, generate
                if config.get(key):
                    run_dir_of_checkpoint(config[key])
            if config.get("model") is not None:
                validate(config)
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None


def run_hydra_app(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; a bad config ends the command with one line naming it, exit code 1."""
    from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let errors reach us instead of Hydra's reporter
    try:
        main()
    except MissingConfigException as error:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        if error.options is None or not group:
            raise SystemExit(f"error: {error}") from None
        raise SystemExit(f"error: {group}={option!r} is not allowed; allowed: {', '.join(error.options)}") from None
    except (CommandError, ConfigCompositionException) as error:
        raise SystemExit(f"error: {error}") from None
    except InstantiationException as error:  # a constructor rejected a value (the datamodule, the model)
        if isinstance(error.__cause__, ValueError):
            raise SystemExit(f"error: {error.__cause__}") from None
        raise


# ------------------------------------------------------------------------------------------- resume


def resume_config(ckpt_path: str, overrides: Iterable[str]) -> DictConfig:
    """The config a run was started with, updated by this command's ``key=value`` overrides.

    Config groups (``model=gru``) cannot change on resume: the checkpoint holds that model's weights.
    """
    run_dir = run_dir_of_checkpoint(ckpt_path)
    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    dotlist = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "ckpt_path":
            continue
        if isinstance(OmegaConf.select(cfg, key), DictConfig):
            raise ConfigError(f"{override!r} cannot change on resume; the run in {run_dir} was started with {key}")
        dotlist.append(f"{key}={value}")
    cfg.merge_with_dotlist(dotlist)
    cfg.ckpt_path = str(Path(ckpt_path).resolve())
    return cfg
