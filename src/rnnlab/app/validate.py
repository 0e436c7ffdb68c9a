"""Early validation: the values users most often get wrong, checked before anything is built or written.

One function per command (``validate`` for train, ``validate_eval``, ``validate_generate``); ``ValidateConfig``,
a Hydra callback, runs them before Hydra creates the run directory. Light at import (no torch): the callback
runs in the entry point's process before composition ends; torch is imported only to read a checkpoint.
"""

from __future__ import annotations

import inspect
import os
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnnlab.app.rundirs import RUN_CONFIG, VOCABULARY, load_run_config, run_dir_of_checkpoint
from rnnlab.devices import GPU_ACCELERATORS, gpu_available
from rnnlab.errors import ConfigError, check_flag, check_number, check_one_of, first_line

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
SEEDS = 2**32  # numpy's seeds (seed_everything seeds numpy too): 0 .. 2**32 - 1


TEST_CHECKPOINTS = ("best", "last")  # what train.py tests after fitting (conf/train.yaml test_ckpt)
OPTIMIZED_MODES = ("max", "min")  # the best checkpoint's and early stopping's direction (conf/data/*.yaml)
# The trainer's step and epoch intervals (conf/trainer/default.yaml) -> what is allowed.
TRAINER_INTERVALS = {
    "check_val_every_n_epoch": "an integer >= 1 (validate every that many epochs), or null",
    "log_every_n_steps": "an integer >= 1, or null for Lightning's 50",
}
DEVICES = "an integer >= 1, -1 for every device, 'auto', or a list of device indices such as [0,1]"


def check_common(cfg: DictConfig) -> None:
    """``seed`` and ``threads``, which every command has."""
    if "seed" in cfg:
        allowed = f"an integer in 0..{SEEDS - 1}"
        check_number("seed", cfg.seed, integer=True, low=0, low_inclusive=True, high=SEEDS, allowed=allowed)
    if cfg.get("threads") is not None:
        allowed = "an integer >= 1, or null for every core"
        check_number("threads", cfg.threads, integer=True, low=1, low_inclusive=True, allowed=allowed)


def validate(cfg: DictConfig) -> None:
    """Check a training config: the values users most often get wrong, before anything is built or written.

    Plain values first: their errors come before torch is imported (for the registries of cells and readouts).
    """
    check_common(cfg)
    model = cfg.model
    check_number("model.hidden_size", model.hidden_size, integer=True, low=0)
    check_number("model.num_layers", model.num_layers, integer=True, low=0)
    check_number("model.dropout", model.dropout, low=0, low_inclusive=True, high=1)
    check_number("model.readout_dropout", model.get("readout_dropout", 0.0), low=0, low_inclusive=True, high=1)
    check_number("model.label_smoothing", model.get("label_smoothing", 0.0), low=0, low_inclusive=True, high=1)
    check_number("model.optimizer.lr", model.optimizer.lr, low=0)
    check_number("model.optimizer.weight_decay", model.optimizer.get("weight_decay", 0.0), low=0, low_inclusive=True)
    check_number("data.batch_size", cfg.data.batch_size, integer=True, low=0)
    check_number("trainer.max_epochs", cfg.trainer.max_epochs, integer=True, low=0)
    check_one_of("test_ckpt", cfg.get("test_ckpt", "best"), TEST_CHECKPOINTS)
    check_one_of("optimized_mode", cfg.get("optimized_mode", "max"), OPTIMIZED_MODES)
    check_model_options(model)

    from rnnlab.cells import CELLS, ENCODERS
    from rnnlab.models import READOUTS

    check_one_of("model.cell", model.cell, CELLS)
    check_one_of("model.impl", model.impl, ENCODERS.names())
    check_one_of("model.readout", model.readout, READOUTS.names())
    check_trainer(cfg.trainer)
    check_data(cfg.data)


def check_model_options(model: DictConfig) -> None:
    """The model's flags and the numbers that would train to NaN or be silently moved."""
    for key in ("bidirectional", "compile"):
        check_flag(f"model.{key}", model.get(key, False))
    if model.optimizer.get("fused") is not None:
        check_flag("model.optimizer.fused", model.optimizer.fused, None)
    if model.get("forget_bias") is not None:
        check_number("model.forget_bias", model.forget_bias, allowed="a finite number, or null for the cell's own")
    scheduler = model.get("scheduler")
    if scheduler is not None and scheduler.get("pct_start") is not None:  # one-cycle's warm-up share
        allowed = "a number in 0..1 (the share of the steps spent warming up)"
        check_number(
            "model.scheduler.pct_start",
            scheduler.pct_start,
            low=0,
            low_inclusive=True,
            high=1,
            high_inclusive=True,
            allowed=allowed,
        )


def check_data(data: DictConfig) -> None:
    """The datamodule's own argument checks (``check_arguments``), run without building it (no data read)."""
    from hydra.utils import get_class

    cls = get_class(data._target_)
    if not hasattr(cls, "check_arguments"):  # a datamodule of the user's own: its constructor checks
        return
    arguments = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k != "_target_"}
    parameters = inspect.signature(cls).parameters
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise ConfigError(f"data.{unknown[0]} is not an argument of {cls.__name__}; allowed: {', '.join(parameters)}")
    bound = inspect.signature(cls).bind(**arguments)
    bound.apply_defaults()
    try:
        cls.check_arguments(**bound.arguments)
    except ValueError as error:  # the datamodules' one-line messages name the data.* value
        raise ConfigError(str(error)) from None


def check_trainer(trainer: DictConfig) -> None:
    """One-line errors for a trainer config that Lightning would reject with a traceback (or worse, later: a
    zero interval divides by zero at the first step, a negative clip value turns clipping off unsaid)."""
    check_one_of("trainer.precision", str(trainer.get("precision", 32)), PRECISIONS)
    for key in ("enable_progress_bar", "enable_model_summary"):
        check_flag(f"trainer.{key}", trainer.get(key, True))
    check_flag("trainer.deterministic", trainer.get("deterministic", False), "warn", None)
    for key, allowed in TRAINER_INTERVALS.items():
        if trainer.get(key) is not None:
            check_number(f"trainer.{key}", trainer[key], integer=True, low=1, low_inclusive=True, allowed=allowed)
    if trainer.get("gradient_clip_val") is not None:
        allowed = "a finite number >= 0, or null for no clipping"
        check_number("trainer.gradient_clip_val", trainer.gradient_clip_val, low=0, low_inclusive=True, allowed=allowed)
    check_devices(trainer.get("devices", "auto"))
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in GPU_ACCELERATORS and not gpu_available(accelerator):
        import torch

        raise ConfigError(
            f"trainer.accelerator={accelerator!r} needs a GPU, and none is visible here (torch {torch.__version__}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
            "use trainer=cpu, trainer=default (any device) or trainer=ddp_sim"
        )


def check_devices(devices: Any) -> None:
    """``trainer.devices`` as Lightning takes it: a count, -1, ``auto``, or indices (a list, or "0,1")."""
    if OmegaConf.is_list(devices):
        devices = list(devices)
    if isinstance(devices, str):
        text = devices.strip()
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if "," in text:  # indices
            ok = bool(parts) and all(part.isdigit() for part in parts)
        else:  # a count
            ok = text in ("auto", "-1") or (text.isdigit() and int(text) >= 1)
    elif isinstance(devices, list):
        ok = bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    else:
        ok = isinstance(devices, int) and not isinstance(devices, bool) and (devices == -1 or devices >= 1)
    if not ok:
        raise ConfigError(f"trainer.devices={devices!r} is not allowed; must be {DEVICES}")


def check_checkpoint(key: str, ckpt_path: str) -> tuple[dict, DictConfig]:
    """The checkpoint ``key=ckpt_path`` (read on the CPU) and the config of the run that wrote it.

    One-line ``ConfigError`` naming ``key`` for a path outside a run directory, a file torch cannot read
    (truncated, not a checkpoint) or a run whose ``config.yaml`` is unreadable.
    """
    import torch

    run_dir = run_dir_of_checkpoint(ckpt_path, key)
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated zip, pickle garbage, unreadable file: all mean "not a checkpoint"
        raise ConfigError(f"{key}={ckpt_path!r} is not a readable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{key}={ckpt_path!r} is not a Lightning checkpoint (it has no state_dict)")
    return checkpoint, load_run_config(run_dir)


def check_weights_of_run(key: str, ckpt_path: str, checkpoint: dict, run_cfg: DictConfig) -> None:
    """The checkpoint holds the weights of the model its run's config builds (not another run's file copied in)."""
    from hydra.errors import InstantiationException

    from rnnlab.app.resume import builds_model_of

    run_config = run_dir_of_checkpoint(ckpt_path, key) / RUN_CONFIG
    try:
        fits = builds_model_of(run_cfg, checkpoint["state_dict"])
    except InstantiationException as error:  # the run's data or model no longer builds (a corpus moved away)
        raise ConfigError(f"{run_config} no longer builds its run ({first_line(error.__cause__ or error)})") from None
    if not fits:
        raise ConfigError(
            f"{key}={ckpt_path!r} does not hold the weights of the model of its run ({run_config}); "
            "give a checkpoint that run wrote"
        )


def validate_train(cfg: DictConfig) -> None:
    """``src/train.py``: the config; a resumed run's checkpoint and saved config."""
    if cfg.get("ckpt_path"):
        check_checkpoint("ckpt_path", cfg.ckpt_path)
    validate(cfg)


def validate_eval(cfg: DictConfig) -> None:
    """``src/eval.py``: threads, the checkpoint and its run's config, the trainer overrides."""
    check_common(cfg)
    checkpoint, run_cfg = check_checkpoint("ckpt_path", cfg.ckpt_path)
    check_weights_of_run("ckpt_path", cfg.ckpt_path, checkpoint, run_cfg)
    check_trainer(OmegaConf.merge(run_cfg.trainer, cfg.get("trainer") or {}))


def validate_generate(cfg: DictConfig) -> None:
    """``src/generate.py``: the checkpoint of a generative run and the sampling arguments."""
    # The arguments first (no torch), then the checkpoint.
    # Every argument is checked whatever the task: a text run's sampling arguments given to a series run
    # (or a series' to a text run) are still the user's values, and a wrong one is still wrong.
    check_common(cfg)
    check_number("length", cfg.length, integer=True, low=1, low_inclusive=True)
    check_number("temperature", cfg.temperature, low=0, low_inclusive=True)  # 0: the likeliest token
    if cfg.top_k is not None:
        check_number("top_k", cfg.top_k, integer=True, low=1, low_inclusive=True)
    check_number("seed_len", cfg.seed_len, integer=True, low=1, low_inclusive=True)
    vocabulary_file = run_dir_of_checkpoint(cfg.ckpt, "ckpt") / VOCABULARY
    text = vocabulary_file.is_file()
    if text and (not isinstance(cfg.prompt, str) or not cfg.prompt):  # sampled from a prompt
        raise ConfigError(f"prompt={cfg.prompt!r} is not allowed; give some text to start from, e.g. prompt='The '")
    checkpoint, run_cfg = check_checkpoint("ckpt", cfg.ckpt)
    check_generative_checkpoint(cfg.ckpt, checkpoint)
    check_weights_of_run("ckpt", cfg.ckpt, checkpoint, run_cfg)
    if text:
        check_prompt(cfg.prompt, load_vocabulary(vocabulary_file))
        return
    from rnnlab.data.synthetic import SPLITS

    check_one_of("split", cfg.split, SPLITS)  # a series, continued from a split's first seed_len points
    if isinstance(run_cfg.data.get("series_len"), int) and cfg.seed_len + cfg.length > run_cfg.data.series_len:
        raise ConfigError(
            f"seed_len + length = {cfg.seed_len} + {cfg.length} is more than the run's {run_cfg.data.series_len}-point "
            f"series (data.series_len); give length <= {max(run_cfg.data.series_len - cfg.seed_len, 0)}"
        )


def check_generative_checkpoint(ckpt: str, checkpoint: dict) -> None:
    """The model of ``checkpoint`` predicts its own next input (its task, saved with the weights, says)."""
    from rnnlab.models import saved_task
    from rnnlab.models.generation import check_generative

    hparams = checkpoint.get("hyper_parameters") or {}
    task = saved_task(hparams)
    if task is not None:  # else generate.py checks the model it builds
        try:
            check_generative(task, bool(hparams.get("bidirectional")))
        except ValueError as error:
            raise ConfigError(f"ckpt={ckpt!r}: {error}") from None


def load_vocabulary(path: Path):
    """A text run's vocabulary (``vocab.json``); one line naming the file if it is not readable."""
    from rnnlab.data import Vocabulary

    try:
        return Vocabulary.load(path)
    except Exception as error:  # edited by hand, truncated
        raise ConfigError(f"{path} is not a readable vocabulary ({first_line(error)})") from None


def check_prompt(prompt: Any, vocabulary) -> None:
    """A text run's prompt: made of tokens of the run's vocabulary (others would read as <unk>)."""
    tokens = vocabulary.tokenize(prompt)
    if not tokens:
        raise ConfigError(f"prompt={prompt!r} has no {vocabulary.level} tokens to start from")
    unknown = sorted({t for t in tokens if t not in vocabulary.index})
    if unknown:
        kind = "characters" if vocabulary.level == "char" else "words"
        shown = ", ".join(repr(t) for t in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
        raise ConfigError(
            f"prompt={prompt!r} has {kind} outside the run's vocabulary of {len(vocabulary)} tokens: {shown} "
            f"(listed in {VOCABULARY} in the run directory)"
        )


def check_compare(cfg: DictConfig) -> None:
    """``experiment=compare_cells``: the number of seeds each cell runs (0 would run nothing)."""
    check_number("compare.seeds", cfg.compare.seeds, integer=True, low=1, low_inclusive=True)


def command_check(config: DictConfig):
    """The check of the command a config belongs to, known by its keys (conf/train.yaml, eval.yaml, generate.yaml)."""
    if "model" in config:
        return validate_train
    if "ckpt" in config:
        return validate_generate
    if "ckpt_path" in config:
        return validate_eval
    return None


class ValidateConfig(Callback):
    """Hydra callback: validate before Hydra creates the run directory, so a rejected run writes nothing.

    Hydra turns exceptions raised in callbacks into warnings, hence the explicit exit.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check = command_check(config)
        if check is not None:
            _exit_on_error(check, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The values every job shares (swept ones are checked in each job), before any job or sweep directory.
        _exit_on_error(check_common, config)
        if config.get("compare") is not None:  # before the sweeper expands range(compare.seeds)
            _exit_on_error(check_compare, config)


def _exit_on_error(check, config: DictConfig) -> None:
    from omegaconf.errors import MissingMandatoryValue

    try:
        check(config)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    except MissingMandatoryValue:  # ckpt_path=???: run_hydra_app names it when Hydra resolves the run directory
        return
    except Exception:  # a bug, not a user error: Hydra would turn it into a warning and run the command anyway
        traceback.print_exc()
        raise SystemExit(1) from None
