"""Generating from a checkpoint (``src/generate.py``): text sampled from a prompt, or a series continued."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from rnnlab import budget
from rnnlab.app.build import load_run, set_threads
from rnnlab.app.rundirs import VOCABULARY, load_run_config, run_dir_of_checkpoint
from rnnlab.app.session import run_session
from rnnlab.console import say, show
from rnnlab.models import LanguageModel, RecurrentModel


def generate_from_checkpoint(cfg: DictConfig) -> str | float:
    """Generate ``cfg.length`` steps with the model of ``cfg.ckpt``; outputs go to ``cfg.paths.output_dir``.

    Text: the prompt's continuation, sampled, printed and saved as sample.txt (returned).
    Series: a continuation of the first ``seed_len`` points of a split's series, saved as generation.png
    and generation.npz (seed, generated, true); returns its MSE against the true continuation.
    """
    from rnnlab.models.generation import check_generative

    budget.apply(cfg)  # RNNLAB_BUDGET=tiny: fewer steps
    set_threads(cfg.get("threads"))
    datamodule, model, _ = load_run(cfg.ckpt, cfg.paths.output_dir)
    checkpoint = torch.load(cfg.ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    check_generative(model.task, model.hparams.bidirectional)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = run_dir_of_checkpoint(cfg.ckpt)
    with run_session(cfg, out, "generate", of_run=load_run_config(run_dir)) as session:
        session.under_way()
        if isinstance(model, LanguageModel):
            return _sample_text_to(out, model, run_dir, cfg)
        mse = _continue_series_to(out, model, datamodule, cfg)
        session.done({"generate/mse": mse})
        return mse


def _sample_text_to(out: Path, model: RecurrentModel, run_dir: Path, cfg: DictConfig) -> str:
    from rnnlab.data.text import Vocabulary
    from rnnlab.models.generation import sample_text

    vocabulary = Vocabulary.load(run_dir / VOCABULARY)  # the run's own, whatever the corpus is now
    text = sample_text(model, vocabulary, cfg.prompt, cfg.length, cfg.temperature, cfg.top_k, cfg.seed)
    (out / "sample.txt").write_text(text, encoding="utf-8")
    show(text)
    say(f"generate length={cfg.length} temperature={cfg.temperature} top_k={cfg.top_k} out={out}")
    return text


def _continue_series_to(out: Path, model: RecurrentModel, datamodule, cfg: DictConfig) -> float:
    import numpy as np

    from rnnlab.callbacks.figures import series_figure
    from rnnlab.models.generation import generate

    seed, truth = datamodule.continuation(cfg.split, cfg.seed_len, cfg.length)
    generated = generate(model, seed, cfg.length)
    mse = float(((generated - truth) ** 2).mean())
    np.savez(out / "generation.npz", seed=seed.numpy(), generated=generated.numpy(), true=truth.numpy())
    figure = series_figure(
        f"{cfg.length} steps generated after {cfg.seed_len} seed steps ({cfg.split})",
        true=torch.cat([seed, truth], 1),
        generated=torch.cat([seed, generated], 1),
    )
    figure.savefig(out / "generation.png", dpi=120)
    trivial_mse = model.task.trivial_mse
    assert trivial_mse, "a series model's task has a trivial_mse (SequenceRegressor refuses one without)"
    say(f"generate length={cfg.length} mse={mse:.4f} mse_ratio={mse / trivial_mse:.4f} out={out}")
    return mse
