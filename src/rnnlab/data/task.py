"""The contract between a task's data and the model built for it (``TaskSpec``)."""

from __future__ import annotations

from dataclasses import dataclass

# How token inputs reach the encoder (``data.encoding``); the models package builds a layer for each.
ENCODINGS = ("embedding", "onehot")


@dataclass(frozen=True)
class TaskSpec:
    """What a dataset asks of a model.

    kind: ``classification`` (cross-entropy over ``output_size`` classes) or ``regression`` (MSE).
    input_size: D, features per time step. seq_len: T. output_size: classes or regression targets.
    per_step: a target at every step (many-to-many: y (N, T, O)) instead of one per sequence (y (N, O)).
    trivial_mse: MSE of the best constant predictor (regression), the yardstick of ``mse_ratio``.
    tolerance: a prediction within this of its target counts as solved (reported as ``within_tol``).
    stateful: batches continue each other row by row; the model carries its hidden state across them.
    generative: inputs and targets are the same series, so predictions can be fed back (generation).
    encoding: for token inputs (x (N, T) indices into ``input_size`` tokens): ``onehot`` or ``embedding``
    (of ``embedding_dim``); None for real-valued inputs. token_metric: ``bpc`` or ``ppl`` (language models).
    """

    kind: str
    input_size: int
    seq_len: int
    output_size: int
    per_step: bool = False
    trivial_mse: float | None = None
    tolerance: float | None = None
    stateful: bool = False
    generative: bool = False
    encoding: str | None = None
    embedding_dim: int | None = None
    token_metric: str | None = None
