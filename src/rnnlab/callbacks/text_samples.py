"""Text samples from a language model, logged to TensorBoard during training."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger


class TextSamples(pl.Callback):
    """Language models: every ``every_n_epochs`` validation epochs, log ``samples/text``, a continuation of
    ``prompt`` of ``length`` tokens sampled at ``temperature`` (``top_k``: only the k likeliest tokens)."""

    def __init__(
        self,
        every_n_epochs: int = 1,
        prompt: str = "The ",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int = 0,
    ):
        self.every_n_epochs, self.prompt, self.length = every_n_epochs, prompt, length
        self.temperature, self.top_k, self.seed = temperature, top_k, seed

    def on_validation_epoch_end(self, trainer, pl_module):
        vocabulary = getattr(trainer.datamodule, "vocabulary", None)
        if (
            vocabulary is None
            or not trainer.is_global_zero
            or trainer.sanity_checking
            or self.every_n_epochs <= 0
            or trainer.current_epoch % self.every_n_epochs
        ):
            return
        from rnnlab.models.generation import sample_text

        text = sample_text(pl_module, vocabulary, self.prompt, self.length, self.temperature, self.top_k, self.seed)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # Markdown: indent to keep the sample verbatim.
                logger.experiment.add_text("samples/text", "    " + text.replace("\n", "\n    "), trainer.global_step)
