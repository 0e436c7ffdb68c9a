"""Sequence generation: roll a trained next-step model forward, feeding each prediction back."""

from __future__ import annotations

import torch

from rnnlab.models import RecurrentModel


def check_generative(model: RecurrentModel) -> None:
    if not model.task.generative:
        raise ValueError(
            f"the task of this model ({model.task.kind}, input_size={model.task.input_size}, "
            f"output_size={model.task.output_size}) does not predict its own next input; cannot generate"
        )
    if model.hparams.bidirectional:
        raise ValueError("model.bidirectional=true reads the future; a bidirectional model cannot generate")


@torch.no_grad()
def generate(model: RecurrentModel, seed: torch.Tensor, steps: int) -> torch.Tensor:
    """Continue ``seed`` (N, T0, D) for ``steps`` steps -> (N, steps, D).

    The seed is read in one pass; then each prediction is the next input, one step at a time, the
    hidden state carried along. Runs on the model's device and dtype.
    """
    check_generative(model)
    if steps < 1:
        raise ValueError(f"steps={steps!r} is not allowed; must be >= 1")
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    prediction, state = model.predict_with_state(seed.to(device=parameter.device, dtype=parameter.dtype))
    step_input = prediction[:, -1:]
    outputs = [step_input]
    for _ in range(steps - 1):
        step_input, state = model.predict_with_state(step_input, state)
        outputs.append(step_input)
    model.train(was_training)
    return torch.cat(outputs, dim=1)
