"""Lightning callbacks that explain a run in TensorBoard.

- ``diagnostics``: gradient norms by time step (the vanishing gradient) and by parameter group;
- ``views``: the custom-scalars layout and the confusion matrix;
- ``figures``: figure helpers and regression predictions / generated continuations;
- ``text_samples``: samples from a language model.

May import ``errors``, ``registry``, ``cells``, ``data`` and ``models``.
"""

from rnnlab.callbacks.diagnostics import GradientDiagnostics
from rnnlab.callbacks.figures import PredictionFigures
from rnnlab.callbacks.text_samples import TextSamples
from rnnlab.callbacks.views import TensorBoardViews

__all__ = ["GradientDiagnostics", "PredictionFigures", "TensorBoardViews", "TextSamples"]
