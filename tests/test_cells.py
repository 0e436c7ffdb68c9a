"""The from-scratch cells (rnnlab.cells): reference outputs, gradients, torch.nn parity, conventions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from rnnlab.cells import (
    CELLS,
    GRU,
    LSTM,
    RNNStack,
    VanillaRNN,
    build_encoder,
    copy_to_torch,
    load_from_torch,
    to_torch,
    torch_parameter_pairs,
)

KINDS = {"vanilla": VanillaRNN, "gru": GRU, "lstm": LSTM}
GATES = {"vanilla": 1, "gru": 3, "lstm": 4}
N, T, D, H = 3, 5, 4, 6

# The spec's reference (tasks-and-cells.md §1): torch.manual_seed(123), then the cell with D=4, H=10.
REFERENCE_X = [
    [[0.7957, 0.5273, 0.3984, 0.2958], [0.3043, 0.4366, 0.6209, 0.4625], [0.4545, 0.8004, 0.9374, 0.6986]],
    [[0.4338, 0.7891, 0.1068, 0.8820], [0.0045, 0.7733, 0.6096, 0.7807], [0.0209, 0.7052, 0.9621, 0.5020]],
]
REFERENCE_OUT = {
    "vanilla": [
        [
            [-0.1970, -0.0668, -0.0769, 0.5907, -0.0841, 0.2742, -0.6842, 0.0232, -0.5910, 0.0012],
            [-0.0470, 0.2382, -0.2181, 0.6580, 0.0175, 0.3684, -0.5890, -0.2707, -0.6052, -0.2056],
            [0.0395, 0.3300, -0.2654, 0.7699, -0.0464, 0.3388, -0.7173, -0.0602, -0.5534, -0.3371],
        ],
        [
            [-0.0902, 0.0316, -0.0349, 0.5173, 0.1766, 0.1269, -0.7318, 0.0493, -0.6808, 0.0731],
            [0.0899, 0.2755, -0.2333, 0.6312, 0.0653, 0.2133, -0.7234, -0.0952, -0.6183, -0.2029],
            [0.0991, 0.2310, -0.1834, 0.7653, 0.0268, 0.2558, -0.6915, 0.0239, -0.4378, -0.3501],
        ],
    ],
    "gru": [
        [
            [0.1931, 0.1542, -0.0479, -0.0970, -0.1372, -0.2287, -0.1640, 0.0329, 0.0138, -0.0188],
            [0.2726, 0.1844, -0.0813, -0.2337, -0.2087, -0.3678, -0.2680, 0.0144, -0.0137, 0.0491],
            [0.3761, 0.2024, -0.0414, -0.2505, -0.2948, -0.4843, -0.4014, 0.0866, 0.0301, 0.0544],
        ],
        [
            [0.1997, 0.1099, -0.0130, -0.1473, -0.1177, -0.2509, -0.2016, 0.0021, -0.0220, 0.0533],
            [0.2857, 0.1486, -0.0474, -0.2790, -0.1991, -0.4168, -0.3185, 0.0090, -0.0471, 0.1243],
            [0.3317, 0.1926, -0.0856, -0.3359, -0.2664, -0.5120, -0.3863, 0.0435, -0.0440, 0.1394],
        ],
    ],
    "lstm": [
        [
            [-0.0036, -0.0012, -0.0527, -0.0895, -0.1548, 0.0887, -0.1402, 0.1327, 0.0201, -0.0073],
            [-0.0114, -0.0504, -0.0769, -0.1348, -0.1642, 0.0969, -0.2106, 0.2081, -0.0096, 0.0205],
            [0.0280, -0.0849, -0.1072, -0.1575, -0.1827, 0.0974, -0.2321, 0.2788, -0.0515, 0.0103],
        ],
        [
            [-0.0330, 0.0147, -0.0665, -0.0761, -0.1594, 0.0656, -0.1720, 0.0879, -0.0653, -0.0055],
            [-0.0350, -0.0300, -0.1045, -0.1350, -0.1626, 0.0742, -0.2439, 0.1446, -0.1244, 0.0361],
            [-0.0053, -0.0773, -0.1306, -0.1765, -0.1549, 0.0886, -0.2632, 0.2150, -0.1339, 0.0640],
        ],
    ],
}


def random_state(kind: str, *shape: int, dtype=torch.float64, requires_grad=False):
    """An initial state of the given shape: one tensor, or an LSTM's (h, c) pair."""
    parts = tuple(
        torch.randn(*shape, dtype=dtype, requires_grad=requires_grad) for _ in range(2 if kind == "lstm" else 1)
    )
    return parts if kind == "lstm" else parts[0]


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Tiny tensors: one thread is fastest, and it keeps a busy machine's thread pool from stalling them."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the cells ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CELLS)
def test_reference_outputs(kind):
    torch.manual_seed(123)
    cell = KINDS[kind](4, 10)
    out, state = cell(torch.tensor(REFERENCE_X))
    torch.testing.assert_close(out, torch.tensor(REFERENCE_OUT[kind]), atol=1e-4, rtol=0)
    torch.testing.assert_close(as_tuple(state)[0], out[:, -1])


@pytest.mark.parametrize("kind", CELLS)
def test_parameter_layout_and_init(kind):
    cell = KINDS[kind](D, H)
    width = GATES[kind] * H
    shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
    assert shapes == {"weight_xh": (D, width), "weight_hh": (H, width), "bias_xh": (width,), "bias_hh": (width,)}
    bound = 1 / math.sqrt(H)
    for p in cell.parameters():
        assert p.abs().max() <= bound
        assert p.std() > bound / 4  # drawn, not left at zero or a constant


@pytest.mark.parametrize("kind", CELLS)
def test_init_draws_each_parameter_in_order(kind):
    """One uniform_(±1/√H) per parameter, in the order weight_xh, weight_hh, bias_xh, bias_hh."""
    torch.manual_seed(7)
    cell = KINDS[kind](D, H)
    torch.manual_seed(7)
    bound = 1 / math.sqrt(H)
    for name in ("weight_xh", "weight_hh", "bias_xh", "bias_hh"):
        expected = torch.empty_like(getattr(cell, name)).uniform_(-bound, bound)
        torch.testing.assert_close(getattr(cell, name).detach(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "state"])
@pytest.mark.parametrize("kind", CELLS)
def test_gradcheck(kind, with_state):
    """Gradients of out and the final state with respect to x, the state and every parameter."""
    n, t, d, h = 2, 3, 3, 4
    cell = KINDS[kind](d, h).double()
    names = [name for name, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    x = torch.randn(n, t, d, dtype=torch.float64, requires_grad=True)
    state = as_tuple(random_state(kind, n, h, requires_grad=True)) if with_state else ()

    def run(x, *args):
        given, weights = args[: len(state)], args[len(state) :]
        out, final = functional_call(
            cell, dict(zip(names, weights)), (x, (given if len(given) > 1 else given[0]) if given else None)
        )
        return (out, *as_tuple(final))

    assert torch.autograd.gradcheck(run, (x, *state, *params))


@pytest.mark.parametrize("kind", CELLS)
def test_initial_state_receives_gradients(kind):
    cell = KINDS[kind](D, H)
    state = random_state(kind, N, H, dtype=torch.float32, requires_grad=True)
    out, _ = cell(torch.randn(N, T, D), state)
    out.pow(2).sum().backward()
    for s in as_tuple(state):
        assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", CELLS)
def test_no_buffers_or_stored_state(kind):
    cell = KINDS[kind](D, H)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    attributes = set(vars(cell))
    out, _ = cell(torch.randn(N, T, D))
    out.sum().backward()
    assert list(cell.buffers()) == []
    assert set(vars(cell)) == attributes
    assert cell.state_dict().keys() == before.keys()
    for key, value in cell.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("kind", CELLS)
def test_cell_follows_float64(kind):
    cell = KINDS[kind](D, H).double()
    out, state = cell(torch.randn(N, T, D, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (N, T, H)
    assert all(s.dtype == torch.float64 and s.shape == (N, H) for s in as_tuple(state))


@pytest.mark.parametrize("kind", CELLS)
def test_follows_the_device(kind):
    """On the meta device (standing in for a GPU) any buffer made on the CPU would fail the run."""
    stack = RNNStack(kind, D, H, num_layers=2, bidirectional=True).to("meta")
    x = torch.randn(N, T, D, device="meta", requires_grad=True)
    out, state = stack(x)
    out.sum().backward()
    assert out.device.type == x.grad.device.type == "meta"
    assert all(s.device.type == "meta" for s in as_tuple(state))
    assert all(p.grad.device.type == "meta" for p in stack.parameters())


@pytest.mark.parametrize("kind", CELLS)
def test_cell_rejects_bad_shapes(kind):
    cell = KINDS[kind](D, H)
    with pytest.raises(ValueError, match="expected x"):
        cell(torch.randn(N, T, D + 1))
    with pytest.raises(ValueError, match="initial state"):
        cell(torch.randn(N, T, D), random_state(kind, N + 1, H, dtype=torch.float32))


@pytest.mark.parametrize("kind", CELLS)
def test_autocast_runs_in_lower_precision(kind):
    cell = KINDS[kind](D, H)
    x = torch.randn(N, T, D)
    reference, _ = cell(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = cell(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in cell.parameters())


# --- the stack against torch.nn ------------------------------------------------------------------------


def run_and_backprop(module: nn.Module, x: torch.Tensor, state, weights):
    """Forward, then backward a loss on out and every final state; returns (out, final state tuple)."""
    out, final = module(x, state)
    final = as_tuple(final)
    loss = (out * weights[0]).sum() + sum((f * w).sum() for f, w in zip(final, weights[1:]))
    loss.backward()
    return out, final


@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "state"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", CELLS)
def test_stack_matches_torch(kind, num_layers, bidirectional, with_state):
    """Same outputs, final states and gradients (x, state, every parameter) as torch.nn, weights from torch."""
    dirs = 2 if bidirectional else 1
    reference = build_encoder(
        "builtin", kind, input_size=D, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional
    ).double()
    stack = load_from_torch(
        RNNStack(kind, D, H, num_layers=num_layers, bidirectional=bidirectional).double(), reference
    )
    x = torch.randn(N, T, D, dtype=torch.float64)
    state = random_state(kind, num_layers * dirs, N, H) if with_state else None
    weights = [torch.randn(N, T, dirs * H, dtype=torch.float64)] + [
        torch.randn(num_layers * dirs, N, H, dtype=torch.float64)
    ] * 2

    results = []
    for module in (stack, reference):
        xs = x.clone().requires_grad_()
        states = None if state is None else tuple(s.clone().requires_grad_() for s in as_tuple(state))
        out, final = run_and_backprop(
            module, xs, None if states is None else (states if kind == "lstm" else states[0]), weights
        )
        results.append((out, final, xs.grad, states and [s.grad for s in states]))

    (out, final, dx, dstate), (out_t, final_t, dx_t, dstate_t) = results
    close = dict(atol=1e-6, rtol=1e-6)
    assert out.shape == out_t.shape == (N, T, dirs * H)
    torch.testing.assert_close(out, out_t, **close)
    assert len(final) == len(final_t)
    for f, f_t in zip(final, final_t):
        assert f.shape == f_t.shape == (num_layers * dirs, N, H)
        torch.testing.assert_close(f, f_t, **close)
    torch.testing.assert_close(dx, dx_t, **close)
    if with_state:
        for g, g_t in zip(dstate, dstate_t):
            torch.testing.assert_close(g, g_t, **close)
    for ours, theirs in torch_parameter_pairs(stack, reference):
        torch.testing.assert_close(ours.grad, theirs.grad.t(), **close)


@pytest.mark.parametrize("kind", CELLS)
def test_to_torch_copies_weights_dtype_and_mode(kind):
    stack = RNNStack(kind, D, H, num_layers=2, dropout=0.3, bidirectional=True).double().eval()
    module = to_torch(stack)
    assert isinstance(module, {"vanilla": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind])
    assert module.batch_first and module.dropout == 0.3 and not module.training
    assert all(p.dtype == torch.float64 for p in module.parameters())
    for ours, theirs in torch_parameter_pairs(stack, module):
        assert torch.equal(theirs, ours.t())
    x = torch.randn(N, T, D, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(stack(x)[0], module(x)[0], atol=1e-6, rtol=1e-6)


def test_copy_to_torch_and_back_round_trips():
    stack = RNNStack("lstm", D, H, num_layers=2)
    module = copy_to_torch(stack, nn.LSTM(D, H, num_layers=2, batch_first=True))
    other = load_from_torch(RNNStack("lstm", D, H, num_layers=2), module)
    for a, b in zip(stack.parameters(), other.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "module",
    [
        nn.GRU(D, H, batch_first=True),
        nn.LSTM(D, H + 1, batch_first=True),
        nn.LSTM(D, H, num_layers=2),
        nn.LSTM(D, H, bias=False),
    ],
    ids=["other-kind", "other-size", "other-layers", "no-bias"],
)
def test_conversion_rejects_a_different_module(module):
    with pytest.raises(ValueError, match="counterpart"):
        load_from_torch(RNNStack("lstm", D, H), module)


@pytest.mark.parametrize("kind", CELLS)
def test_dropout_in_eval_mode_matches_torch(kind):
    reference = build_encoder("builtin", kind, input_size=D, hidden_size=H, num_layers=3, dropout=0.5)
    stack = load_from_torch(RNNStack(kind, D, H, num_layers=3, dropout=0.5), reference)
    stack.eval(), reference.eval()
    x = torch.randn(N, T, D)
    with torch.no_grad():
        torch.testing.assert_close(stack(x)[0], reference(x)[0], atol=1e-5, rtol=1e-5)


def test_dropout_acts_between_layers_in_training_only():
    x = torch.randn(N, T, D)
    stack = RNNStack("gru", D, H, num_layers=2, dropout=0.5)
    with torch.no_grad():
        evaluated = stack.eval()(x)[0]
        assert not torch.allclose(stack.train()(x)[0], evaluated)
        single = RNNStack("gru", D, H, num_layers=1, dropout=0.9)  # nothing after the last layer
        torch.testing.assert_close(single.train()(x)[0], single.eval()(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", CELLS)
def test_stack_moved_to_float64_keeps_float64(kind):
    stack = RNNStack(kind, D, H, num_layers=2, bidirectional=True).to(torch.float64)
    out, state = stack(torch.randn(N, T, D, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert all(s.dtype == torch.float64 for s in as_tuple(state))
    out.sum().backward()
    assert all(p.grad.dtype == torch.float64 for p in stack.parameters())


@pytest.mark.parametrize("kind", CELLS)
def test_stack_initial_state_receives_gradients(kind):
    """Truncated BPTT feeds the detached final state back in: it must get gradients."""
    stack = RNNStack(kind, D, H, num_layers=2)
    _, state = stack(torch.randn(N, T, D))
    state = tuple(s.detach().requires_grad_() for s in as_tuple(state))
    out, _ = stack(torch.randn(N, T, D), state if kind == "lstm" else state[0])
    out.sum().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in state)


@pytest.mark.parametrize("kind", CELLS)
def test_unbatched_input_matches_batch_of_one(kind):
    stack = RNNStack(kind, D, H, num_layers=2, bidirectional=True)
    x = torch.randn(T, D)
    state = random_state(kind, 4, H, dtype=torch.float32)
    out, final = stack(x, state)
    batched_state = tuple(s.unsqueeze(1) for s in as_tuple(state))
    out_b, final_b = stack(x.unsqueeze(0), batched_state if kind == "lstm" else batched_state[0])
    torch.testing.assert_close(out, out_b.squeeze(0))
    for f, f_b in zip(as_tuple(final), as_tuple(final_b)):
        torch.testing.assert_close(f, f_b.squeeze(1))


def test_stack_rejects_a_state_of_the_wrong_shape():
    with pytest.raises(ValueError, match="state of shape"):
        RNNStack("gru", D, H, num_layers=2)(torch.randn(N, T, D), torch.zeros(1, N, H))


def test_unknown_cell_names_the_allowed_ones():
    with pytest.raises(ValueError, match="gru, lstm, vanilla"):
        RNNStack("elman", D, H)


# --- the encoder registry ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CELLS)
def test_build_encoder_custom_follows_builtin_conventions(kind):
    kwargs = dict(input_size=D, hidden_size=H, num_layers=2, dropout=0.1, bidirectional=True)
    custom, builtin = build_encoder("custom", kind, **kwargs), build_encoder("builtin", kind, **kwargs)
    assert isinstance(custom, RNNStack) and custom.cell == kind
    assert sum(p.numel() for p in custom.parameters()) == sum(p.numel() for p in builtin.parameters())
    x = torch.randn(N, T, D)
    for state in (None, random_state(kind, 4, N, H, dtype=torch.float32)):
        (out, final), (out_b, final_b) = custom(x, state), builtin(x, state)
        assert out.shape == out_b.shape and out.is_contiguous()
        assert type(final) is type(final_b)
        assert [f.shape for f in as_tuple(final)] == [f.shape for f in as_tuple(final_b)]
