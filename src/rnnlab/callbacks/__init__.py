"""Lightning callbacks that explain a run in TensorBoard.

- ``diagnostics``: gradient norms by time step (the vanishing gradient) and by parameter group;
- ``views``: the custom-scalars layout and the confusion matrix;
- ``figures``: figure helpers and regression predictions / generated continuations;
- ``text_samples``: samples from a language model;
- ``csv_log``: the CSV logger (conf/logger/csv.yaml), continued by a resumed run.

May import ``errors``, ``registry``, ``cells``, ``data`` and ``models``.
"""

from rnnlab.callbacks.csv_log import ResumableCSVLogger
from rnnlab.callbacks.diagnostics import GradientDiagnostics
from rnnlab.callbacks.figures import PredictionFigures
from rnnlab.callbacks.text_samples import TextSamples
from rnnlab.callbacks.views import TensorBoardViews

__all__ = ["GradientDiagnostics", "PredictionFigures", "ResumableCSVLogger", "TensorBoardViews", "TextSamples"]
