"""Composing the conf/ tree from Python as the command line would (tests, benchmarks, the study)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.app.setup import register_resolvers


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
    conf_dir = Path(__file__).resolve().parents[3] / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} interpolations resolve
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        if data_dir is not None:
            cfg.paths.data_dir = str(data_dir)
        del cfg.hydra
    return cfg
