"""Models: the LightningModules built around a recurrent encoder for a task.

- ``layers``: token input layers (``INPUT_LAYERS``, one per ``data.encoding``) and readouts (``READOUTS``);
- ``modules``: ``RecurrentModel`` and one subclass per task kind (classification, regression, language
  model), chosen by ``build_model(task, ...)``;
- ``schedules``: learning-rate schedules that fit any number of steps (``one_cycle``);
- ``generation``: feeding a generative model's predictions back (series continuation, text sampling).

May import ``errors``, ``registry``, ``cells`` and ``data``.
"""

from rnnlab.models.layers import INPUT_LAYERS, READOUTS, Readout
from rnnlab.models.modules import (
    MODELS,
    LanguageModel,
    RecurrentModel,
    SequenceClassifier,
    SequenceRegressor,
    build_model,
    saved_task,
)
from rnnlab.models.schedules import one_cycle

__all__ = [
    "INPUT_LAYERS",
    "MODELS",
    "READOUTS",
    "LanguageModel",
    "Readout",
    "RecurrentModel",
    "SequenceClassifier",
    "SequenceRegressor",
    "build_model",
    "one_cycle",
    "saved_task",
]
