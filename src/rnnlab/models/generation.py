"""Generation: roll a trained next-step model forward, feeding each prediction back as the next input.

One loop serves both kinds of generative task: a regression model feeds back its predicted value
(``generate``); a language model feeds back a token sampled from its predicted distribution
(``sample_tokens``, ``sample_text``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rnnlab.data.task import TaskSpec
from rnnlab.errors import ConfigError
from rnnlab.models.modules import RecurrentModel


def check_generative(task: TaskSpec, bidirectional: bool) -> None:
    """Raise ``ConfigError`` unless a model of ``task`` can be fed its own predictions."""
    if not task.generative:
        raise ConfigError(
            f"the task of this model ({task.kind}, input_size={task.input_size}, output_size={task.output_size}) "
            "does not predict its own next input; cannot generate (generate.py takes sine and text runs)"
        )
    if bidirectional:
        raise ConfigError("model.bidirectional=true reads the future; a bidirectional model cannot generate")


@torch.no_grad()
def roll_forward(
    model: RecurrentModel, seed: torch.Tensor, steps: int, next_input: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Read ``seed`` (N, T0, ...) in one pass, then ``steps`` times turn the last prediction (N, 1, O) into the
    next input with ``next_input``, carrying the hidden state. Returns the generated inputs (N, steps, ...)."""
    check_generative(model.task, model.hparams.bidirectional)
    if steps < 1:
        raise ValueError(f"length={steps!r} is not allowed; must be >= 1")
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    # Real-valued seeds take the model's dtype; token indices stay integers.
    seed = seed.to(parameter.device, parameter.dtype) if seed.is_floating_point() else seed.to(parameter.device)
    prediction, state = model.predict_with_state(seed)
    step_input = next_input(prediction[:, -1:])
    outputs = [step_input]
    for _ in range(steps - 1):
        prediction, state = model.predict_with_state(step_input, state)
        step_input = next_input(prediction)
        outputs.append(step_input)
    model.train(was_training)
    return torch.cat(outputs, dim=1)


def generate(model: RecurrentModel, seed: torch.Tensor, steps: int) -> torch.Tensor:
    """Continue a real-valued series: seed (N, T0, D) -> (N, steps, D), each prediction the next input."""
    return roll_forward(model, seed, steps, next_input=lambda prediction: prediction)


def sample_next(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw token indices (N, 1) from logits (N, 1, V): softmax(logits / temperature) over the ``top_k`` most
    likely tokens (all if None); temperature 0 takes the most likely token."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature!r} is not allowed; must be >= 0")
    logits = logits[:, -1]
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        threshold = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probabilities = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator)


def sample_tokens(
    model: RecurrentModel,
    prompt: torch.Tensor,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue token sequences: prompt (N, T0) indices -> (N, length) sampled indices."""
    return roll_forward(model, prompt, length, lambda logits: sample_next(logits, temperature, top_k, generator))


def sample_text(
    model: RecurrentModel,
    vocabulary,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> str:
    """The prompt followed by ``length`` sampled tokens, as text."""
    tokens = vocabulary.tokenize(prompt)
    if not tokens:
        raise ValueError(f"prompt={prompt!r} has no {vocabulary.level} tokens to start from")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    ids = sample_tokens(model, vocabulary.encode(tokens).unsqueeze(0), length, temperature, top_k, generator)
    return vocabulary.decode(vocabulary.encode(tokens).tolist() + ids[0].tolist())
