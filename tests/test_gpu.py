"""GPU tests and the GPU check (``make gpu-check``, bench/gpu_check.py).

Tests marked ``cuda`` need a CUDA GPU and skip, with the reason, where none is visible; ``make gpu-check`` runs
them (``pytest -m cuda``). They drive training through the command line (``src/train.py``, ``eval.py``,
``generate.py``) and import only ``rnnlab.cells``. The other tests run anywhere, in seconds: the check's no-GPU
exit, its budgets, its summary, and its reading of a sweep's trials, epoch clocks, copy traces and bench tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from rnnlab import budget

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))
import gpu_check  # noqa: E402  (bench/ is a folder of scripts, not a package)
import gpu_check_cells  # noqa: E402
import gpu_check_runner as runner  # noqa: E402
import gpu_check_runs  # noqa: E402
import gpu_check_sweep  # noqa: E402
import gpu_check_tests  # noqa: E402
import gpu_probes  # noqa: E402

NEEDS_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA GPU; none is visible (torch {torch.__version__}, "
    f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})",
)
KINDS = ("vanilla", "gru", "lstm")
# The tiny budget (rnnlab.budget): one epoch of a few batches.
TINY = budget.overrides(max_epochs=1, limit_val_batches=1, limit_test_batches=1)


def cli(script: str, *args: str, root: Path, timeout: float = 140, warnings: str = "ignore"):
    """``src/<script> args`` as a user runs it (logs under ``root``), with bench/ importable for the probes."""
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(BENCH)]
    env = {
        **os.environ,
        "RNNLAB_ROOT": str(root),
        "PYTHONWARNINGS": warnings,
        "PYTHONPATH": os.pathsep.join(pythonpath),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess) -> bool:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return True


def run_dir_of(stdout: str) -> Path:
    return Path(re.search(r"run_dir=(\S+)", stdout).group(1))


# =========================================================================================== on a GPU (marked cuda)


def both_on(kind: str, layers: int, bidirectional: bool, dtype: torch.dtype, device: str = "cuda") -> dict:
    """Forward + backward of a custom ``RNNStack`` and its torch.nn copy (cuDNN on a GPU) on the same input and
    initial state: {impl: [outputs, final states, input grad, state grads, parameter grads in torch's layout]}."""
    from rnnlab.cells import RNNStack, to_torch

    torch.manual_seed(0)
    n, t, d, h = 8, 20, 3, 16
    dirs = 2 if bidirectional else 1
    custom = RNNStack(kind, d, h, num_layers=layers, bidirectional=bidirectional).to(device, dtype)
    builtin = to_torch(custom)
    x = torch.randn(n, t, d, device=device, dtype=dtype)
    state = [torch.randn(layers * dirs, n, h, device=device, dtype=dtype) for _ in range(2 if kind == "lstm" else 1)]
    w_out = torch.randn(n, t, dirs * h, device=device, dtype=dtype)
    w_state = torch.randn(layers * dirs, n, h, device=device, dtype=dtype)
    results = {}
    for name, module in (("custom", custom), ("builtin", builtin)):
        xs = x.clone().requires_grad_()
        s0 = [s.clone().requires_grad_() for s in state]
        out, final = module(xs, tuple(s0) if kind == "lstm" else s0[0])
        finals = list(final) if isinstance(final, tuple) else [final]
        ((out * w_out).sum() + sum((f * w_state).sum() for f in finals)).backward()
        results[name] = [out, *finals, xs.grad, *(s.grad for s in s0)]
    # The custom parameter grads in torch's layout: a stack holding them, converted like the weights.
    holder = RNNStack(kind, d, h, num_layers=layers, bidirectional=bidirectional).to(device, dtype)
    with torch.no_grad():
        for grad_holder, parameter in zip(holder.parameters(), custom.parameters()):
            grad_holder.copy_(parameter.grad)
    results["custom"] += list(to_torch(holder).parameters())
    results["builtin"] += [p.grad for p in builtin.parameters()]
    return results


def needs_cudnn():
    if not (torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled):
        pytest.skip("cuDNN is not available: the built-in cells would run torch's own CUDA kernels")


@pytest.mark.cuda
@NEEDS_CUDA
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)], ids=["1-layer", "2-layer-bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_custom_cells_match_cudnn_in_float64(kind, layers, bidirectional):
    needs_cudnn()
    results = both_on(kind, layers, bidirectional, torch.float64)
    assert len(results["custom"]) == len(results["builtin"])
    for ours, theirs in zip(results["custom"], results["builtin"]):
        assert ours.device.type == "cuda" and ours.dtype == torch.float64
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)  # outputs, states, gradients: |diff| <= 1e-6


@pytest.mark.cuda
@NEEDS_CUDA
@pytest.mark.parametrize("kind", KINDS)
def test_custom_cells_are_close_to_cudnn_in_float32(kind):
    needs_cudnn()
    with tf32_off():
        results = both_on(kind, 2, True, torch.float32)
    for ours, theirs in zip(results["custom"], results["builtin"]):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


@contextlib.contextmanager
def tf32_off():
    """TF32 (on by default for cuDNN) rounds products to 10 bits of mantissa: float32 arithmetic itself, inside."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def bf16_or_skip(precision: str) -> None:
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability()
        pytest.skip(f"bf16 needs compute capability 8.0 or newer; this GPU has {major}.{minor}")


@pytest.mark.cuda
@NEEDS_CUDA
@pytest.mark.parametrize("impl", ["custom", "builtin"])
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_a_training_step_under_mixed_precision(tmp_path, data_dir, precision, impl):
    bf16_or_skip(precision)
    result = cli(
        "train.py",
        "trainer=gpu",
        f"trainer.precision={precision}",
        f"model.impl={impl}",
        *TINY,
        f"paths.data_dir={data_dir}",
        root=tmp_path,
    )
    assert ok(result)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir_of(result.stdout)), size_guidance={"scalars": 0})
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss_step")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses), losses


@pytest.mark.cuda
@NEEDS_CUDA
def test_the_copy_probe_sees_a_host_to_device_copy():
    # The positive control of the next test: the probe reads this torch's trace format.
    host = torch.ones(1000)
    events = gpu_probes.profile_cuda(lambda: host.to("cuda"))
    copies = gpu_probes.host_to_device_copies(events)
    assert [c["bytes"] for c in copies] == [4000], copies


@pytest.mark.cuda
@NEEDS_CUDA
@pytest.mark.parametrize("impl", ["builtin", "custom"])
def test_no_host_to_device_copy_of_data_in_training_steps(tmp_path, data_dir, impl, record_property):
    """The splits stay on the GPU: steps 2-6 copy no batch, label or index tensor from the host."""
    report = tmp_path / "copies.json"
    result = cli(
        "train.py",
        "trainer=gpu",
        f"model.impl={impl}",
        *budget.overrides(max_epochs=1, limit_train_batches=8, limit_val_batches=1, limit_test_batches=1),
        f"paths.data_dir={data_dir}",
        "+callbacks.copies._target_=gpu_probes.HostToDeviceCopies",
        f"+callbacks.copies.path={report}",
        "+callbacks.copies.steps=5",
        root=tmp_path,
    )
    assert ok(result)
    probe = json.loads(report.read_text())
    assert probe["steps"] == 5
    assert probe["kernels"] > 0, "the profiler recorded no GPU kernel (no CUPTI?): its copy count means nothing"
    copies = probe["copies"]
    small = [c for c in copies if c["bytes"] < gpu_probes.DATA_SIZED_BYTES]
    # Reported in the summary: a few scalars per step (a Python number or list made a GPU tensor) are not data.
    record_property("host-to-device copies per step", f"{len(copies) / probe['steps']:g}")
    record_property("small copies (op, bytes)", sorted({(c["op"], c["bytes"]) for c in small}) or "none")
    assert [c for c in copies if c["bytes"] >= gpu_probes.DATA_SIZED_BYTES] == [], copies


@pytest.mark.cuda
@NEEDS_CUDA
def test_compile_true_trains_compiled_on_cuda(tmp_path, data_dir):
    result = cli(
        "train.py",
        "trainer=gpu",
        "model.compile=true",
        *TINY,
        f"paths.data_dir={data_dir}",
        root=tmp_path,
        warnings="default",  # the fallback to eager warns: it must not
    )
    assert ok(result)
    assert "torch.compile failed" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert "val/acc_best=" in result.stdout


@pytest.mark.cuda
@NEEDS_CUDA
def test_eval_and_generate_a_gpu_sine_run(tmp_path):
    trained = cli(
        "train.py",
        "trainer=gpu",
        "data=sine",
        "data.series_len=2000",
        *TINY,
        root=tmp_path,
    )
    assert ok(trained)
    # Lightning's "GPU available: True (cuda), used: True" goes to the run's train.log (not the console)
    assert "used: True" in (run_dir_of(trained.stdout) / "train.log").read_text()
    ckpt = run_dir_of(trained.stdout) / "checkpoints" / "last.ckpt"
    evaluated = cli("eval.py", f"ckpt_path={ckpt}", root=tmp_path)
    assert ok(evaluated)
    assert "used: True" in evaluated.stdout + evaluated.stderr  # evaluated on the GPU, as the run trained
    mse = float(re.search(r"\[rnnlab\] eval .*test/mse=([0-9.]+)", evaluated.stdout).group(1))
    assert math.isfinite(mse)
    generated = cli("generate.py", f"ckpt={ckpt}", "length=50", "seed_len=20", root=tmp_path)
    assert ok(generated)
    out = Path(re.search(r"\[rnnlab\] generate length=50 mse=[0-9.]+ .* out=(\S+)", generated.stdout).group(1))
    assert (out / "generation.npz").exists() and (out / "generation.png").exists()


# =========================================================================================== the check, on any machine


def test_without_a_gpu_the_check_stops_at_once_with_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hides any GPU, so this runs on GPU machines too
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f'error: no CUDA GPU is visible (torch {torch.__version__}, CUDA_VISIBLE_DEVICES=""); make gpu-check needs one'
    ]
    assert list(tmp_path.iterdir()) == []  # no summary, no working files
    assert time.monotonic() - start < 30  # the torch import, nothing more


def test_the_no_gpu_line_names_an_unset_cuda_visible_devices():
    assert gpu_check.no_gpu_line("2.13.0+cpu", {}) == (
        "error: no CUDA GPU is visible (torch 2.13.0+cpu, CUDA_VISIBLE_DEVICES=<unset>); make gpu-check needs one"
    )
    assert "CUDA_VISIBLE_DEVICES=2,3)" in gpu_check.no_gpu_line("x", {"CUDA_VISIBLE_DEVICES": "2,3"})


def sleeper_part(tmp_path: Path, budget: float) -> runner.Part:
    """A part whose command starts a child that outlives the budget (and writes its pid)."""
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )

    def run(deadline: float) -> runner.Outcome:
        runner.run_command([sys.executable, "-c", script], deadline)
        return runner.Outcome("passed", "never")

    return runner.Part("slow", "a slow part", budget, run)


def test_a_part_past_its_budget_is_stopped_with_its_children_and_the_next_part_runs(tmp_path):
    def failing(deadline: float) -> runner.Outcome:
        raise RuntimeError("no storage\nsecond line")

    parts = [
        sleeper_part(tmp_path, budget=1.5),
        runner.Part("broken", "a broken part", 5, failing),
        runner.Part("fine", "a fine part", 5, lambda deadline: runner.Outcome("passed", "all good", "body")),
    ]
    start = time.monotonic()
    done = runner.run_parts(parts, report=lambda line: None)
    assert time.monotonic() - start < 10
    (slow, overran), (_, broken), (_, fine) = done
    assert overran.status == "overran" and overran.headline == "stopped at its budget of 2 s"
    assert 1.4 < overran.seconds < 8
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    for _ in range(50):  # killed with its process group; gone once reaped by init
        if not Path(f"/proc/{grandchild}").exists() or "Z" in _proc_state(grandchild):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the part's grandchild {grandchild} is still running")
    assert broken.status == "error" and broken.headline == "RuntimeError: no storage"
    assert fine.status == "passed" and runner.exit_code(done) == 1
    assert runner.exit_code(done[2:]) == 0


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_summary_has_an_overview_row_and_a_section_per_part():
    parts = [
        (runner.Part("a", "1. First", 10, None), runner.Outcome("passed", "3 passed", "| t |", 4.2)),
        (runner.Part("b", "2. Second", 20, None), runner.Outcome("overran", "stopped at its budget", "", 20.1)),
    ]
    text = runner.render_summary({"GPUs": "1 (0: Fake GPU)"}, parts, 24.3)
    lines = text.splitlines()
    assert lines[0] == "# rnnlab GPU check" and "- GPUs: 1 (0: Fake GPU)" in lines and "- total: 24 s" in lines
    assert "| 1. First | PASSED | 4 | 10 | 3 passed |" in lines
    assert "| 2. Second | OVERRAN | 20 | 20 | stopped at its budget |" in lines
    assert lines.index("## 1. First") < lines.index("| t |") < lines.index("## 2. Second")
    assert "**OVERRAN** (20 s of 20): stopped at its budget" in lines


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_gpu" name="test_a[lstm]" time="1.5"/>
<testcase classname="tests.test_gpu" name="test_b[bf16-mixed]" time="0.01">
  <skipped type="pytest.skip" message="bf16 needs compute capability 8.0 or newer; this GPU has 7.5">x</skipped>
</testcase>
<testcase classname="tests.test_gpu" name="test_c" time="9.0">
  <properties><property name="host-to-device copies per step" value="1"/></properties>
  <failure message="AssertionError: [{'bytes': 16000}]&#10;more">trace</failure>
</testcase></testsuite></testsuites>"""


def test_the_tests_part_reads_pytest_junit_report():
    rows = gpu_check_tests.junit_rows(JUNIT)
    assert [(r["test"], r["outcome"]) for r in rows] == [
        ("test_gpu::test_a[lstm]", "passed"),
        ("test_gpu::test_b[bf16-mixed]", "skipped"),
        ("test_gpu::test_c", "failed"),
    ]
    assert rows[1]["note"] == "bf16 needs compute capability 8.0 or newer; this GPU has 7.5"
    assert rows[2]["note"] == "AssertionError: [{'bytes': 16000}]; host-to-device copies per step: 1"
    outcome = gpu_check_tests.tests_outcome(1, rows, "FAILED tests/test_gpu.py::test_c")
    assert outcome.status == "failed" and outcome.headline == "1 passed, 1 failed, 1 skipped"
    assert gpu_check_tests.tests_outcome(0, rows[:2], "").status == "passed"
    assert gpu_check_tests.tests_outcome(5, [], "no tests ran").status == "failed"


def add_trials(storage: str, name: str, trials: list[tuple]) -> None:
    """Stored trials (gpu or None, start second, end second) of a real Optuna study."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    t0 = dt.datetime(2026, 12, 3, 9, 0, 0)
    for gpu, start, end in trials:
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=0,
                trial_id=0,
                state=optuna.trial.TrialState.COMPLETE,
                value=0.5,
                values=None,
                datetime_start=t0 + dt.timedelta(seconds=start),
                datetime_complete=t0 + dt.timedelta(seconds=end),
                params={"model.hidden_size": 32},
                distributions={"model.hidden_size": optuna.distributions.IntDistribution(8, 256)},
                user_attrs={} if gpu is None else {"gpu": gpu},
                system_attrs={},
                intermediate_values={},
            )
        )


def test_sweep_trials_gpus_and_overlap_are_read_from_the_storage(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path}/sweep.db"
    # 2 GPUs, 4 workers: two waves of 4 trials, 2 per GPU at a time
    add_trials(storage, "parallel", [(i % 2, 0 if i < 4 else 10, 10 if i < 4 else 20) for i in range(8)])
    trials = gpu_check_sweep.sweep_trials(storage, "parallel")
    assert [t["gpu"] for t in trials] == [0, 1] * 4 and all(t["state"] == "COMPLETE" for t in trials)
    checks = gpu_check_sweep.sweep_checks(trials, n_gpus=2, n_trials=8, n_jobs=4, trials_per_gpu=4)
    assert all(passed for _, passed, _ in checks), checks
    assert ("trials overlapped", True, "at most 4 trials ran at once") in checks

    # one after another, one trial without its GPU, one on a GPU that is not there
    add_trials(storage, "serial", [(0, 0, 5), (None, 5, 10), (3, 10, 15)])
    checks = dict(
        (name, passed)
        for name, passed, _ in gpu_check_sweep.sweep_checks(gpu_check_sweep.sweep_trials(storage, "serial"), 1, 3, 4, 4)
    )
    assert checks["trials overlapped"] is False
    assert checks["each trial recorded its GPU (user attr `gpu`, a visible index)"] is False
    assert checks["3 trials complete"] is True
    table = gpu_check_sweep.trials_table(gpu_check_sweep.sweep_trials(storage, "serial")).splitlines()
    assert table[2] == "| 0 | COMPLETE | 0 | 0.0 | 5.0 | 5.0 | 0.5000 | hidden_size=32 |"


def test_max_overlap_counts_trials_running_at_once():
    assert gpu_check_sweep.max_overlap([]) == 0
    assert gpu_check_sweep.max_overlap([(0, 5), (5, 9)]) == 1  # one ends as the next starts
    assert gpu_check_sweep.max_overlap([(0, 5), (1, 9), (2, 3), (8, 10)]) == 3
    assert gpu_check_sweep.max_overlap(iter([(0, 2), (1, 3)])) == 2  # any iterable, read once


def test_epoch_times_leave_the_first_epoch_out_of_the_median():
    epochs = [
        {"epoch": 0, "start": 0.0, "seconds": 5.0, "validation_seconds": 0.5},
        {"epoch": 1, "start": 6.0, "seconds": 1.0, "validation_seconds": 0.2},
        {"epoch": 2, "start": 7.5, "seconds": 1.2, "validation_seconds": 0.3},
        {"epoch": 3, "start": 9.0, "seconds": 1.1, "validation_seconds": 0.2},
    ]
    times = gpu_check_runs.epoch_times(epochs)
    assert times == {"train": 1.1, "first": 5.0, "validation": 0.2, "epoch_to_epoch": 1.5}
    rows = [
        {"cell": "lstm", "impl": "custom", "times": {**times, "train": 3.3}, "wall": 20.0, "test_acc": "0.9"},
        {"cell": "lstm", "impl": "builtin", "times": times, "wall": 12.0, "test_acc": "0.9"},
    ]
    assert gpu_check_runs.custom_over_builtin(rows) == [("lstm", pytest.approx(3.0))]
    assert "Custom / built-in (cuDNN) training s/epoch: lstm 3.00×" in gpu_check_runs.runs_table(rows)


class FakeModule:
    device = torch.device("cpu")


def test_epoch_clock_takes_validation_out_of_the_training_epoch(tmp_path):
    clock = gpu_probes.EpochClock(str(tmp_path / "epochs.json"))
    trainer, module = SimpleNamespace(current_epoch=0, sanity_checking=True), FakeModule()
    clock.on_validation_epoch_start(trainer, module)  # the sanity check: before any epoch, not counted
    clock.on_validation_epoch_end(trainer, module)
    trainer.sanity_checking = False
    clock.on_train_epoch_start(trainer, module)
    time.sleep(0.05)
    clock.on_validation_epoch_start(trainer, module)
    time.sleep(0.1)
    clock.on_validation_epoch_end(trainer, module)
    clock.on_train_epoch_end(trainer, module)
    ((epoch),) = json.loads((tmp_path / "epochs.json").read_text())
    assert epoch["epoch"] == 0 and 0.04 < epoch["seconds"] < 0.09 and 0.09 < epoch["validation_seconds"] < 0.2


def test_copies_are_read_from_a_kineto_trace_and_linked_to_their_op():
    events = [
        {"ph": "X", "cat": "cpu_op", "name": "aten::copy_", "args": {"External id": 7}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::index_put_", "args": {"External id": 9}},
        {"ph": "X", "cat": "kernel", "name": "void at::native::vectorized_elementwise_kernel", "args": {}},
        {
            "ph": "X",
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD (Pageable -> Device)",
            "args": {"bytes": 16000, "External id": 7, "correlation": 70},
        },
        {
            "ph": "X",
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD (Pinned -> Device)",
            "args": {"bytes": 8, "External id": 9},
        },
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pageable)", "args": {"bytes": 4}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaMemcpyAsync", "args": {"External id": 7}},
    ]
    assert gpu_probes.host_to_device_copies(events) == [
        {"name": "Memcpy HtoD (Pageable -> Device)", "bytes": 16000, "op": "aten::copy_"},
        {"name": "Memcpy HtoD (Pinned -> Device)", "bytes": 8, "op": "aten::index_put_"},
    ]
    assert gpu_probes.count_kernels(events) == 1


def test_cells_rows_are_read_from_the_json_the_bench_writes_and_the_verdict_gives_the_numbers(tmp_path):
    import cells as cells_bench  # bench/cells.py and bench/run.py: the rows and the JSON they write on a GPU
    import run as bench_run

    tables = []
    for batch, factor in ((100, 1.0), (1000, 10.0)):
        rows = [(cell, h, 2.0 * factor, 0.5, 4.0 * factor) for cell in KINDS for h in (32, 128, 512)]
        title = f"Cells: custom vs built-in, forward + backward (N={batch}, T=40, D=1, float32, cuda (X))"
        tables.append(bench_run.Table("cells", title, cells_bench.COLUMNS, rows, "| table |", {"N": batch}))
    bench_run.write_json(tmp_path / "bench.json", {"torch": "x"}, tables)
    rows = gpu_check_cells.cells_rows(json.loads((tmp_path / "bench.json").read_text()))
    assert len(rows) == 18 and {r["N"] for r in rows} == {100, 1000}
    assert rows[0] == {"cell": "vanilla", "N": 100, "H": 32, "custom": 2.0, "builtin": 0.5, "ratio": 4.0}
    verdict = gpu_check_cells.cells_verdict(rows)
    assert verdict.startswith("custom cells far slower than cuDNN: median 22.0× cuDNN's time, from 4.00× to 40.0×")
    assert verdict.endswith("(vanilla H=32 N=1000); slower in 18 of 18 settings")
    fast = [{**r, "ratio": 0.9} for r in rows]
    assert gpu_check_cells.cells_verdict(fast).startswith("custom cells not slower than cuDNN: median 0.9×")


@pytest.mark.slow
def test_the_cells_part_reads_the_json_of_a_real_bench_run_on_the_cpu(tmp_path, monkeypatch):
    # The part's plumbing on the CPU (the check itself never runs it there): bench/run.py times the cells and
    # writes --json; the part reads the numbers from that file, not from the printed tables.
    monkeypatch.setattr(gpu_check_cells, "DEVICE", "cpu")
    monkeypatch.setattr(gpu_check_cells, "BENCH_HIDDEN", (8,))
    monkeypatch.setattr(gpu_check_cells, "BENCH_BATCHES", (4,))
    monkeypatch.setattr(gpu_check_cells, "BENCH_REPEATS", 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    ctx = runner.Context(sys.executable, tmp_path, tmp_path / "data", 0, env)
    outcome = gpu_check_cells.part_cells(ctx, deadline=time.monotonic() + 240)
    assert outcome.status == "passed", outcome.body
    assert re.match(r"custom cells .*; slower in \d of 3 settings$", outcome.headline)
    assert "--json <tmp>/cells-bench.json" in outcome.body and "#### Cells: custom vs built-in" in outcome.body
    assert json.loads((tmp_path / "cells-bench.json").read_text())["tables"][0]["settings"]["N"] == 4


def fake_context(tmp_path: Path, n_gpus: int = 1) -> runner.Context:
    return runner.Context(sys.executable, tmp_path, tmp_path / "data", n_gpus, {})


def test_timed_runs_past_the_budget_keep_the_runs_done_and_name_the_rest(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, deadline, env=None, cwd=None):
        calls.append(command)
        if len(calls) == 3:
            raise runner.Overrun(command, 1.0, "epoch 2 ...", "")
        clock = Path(next(c for c in command if c.startswith("+callbacks.epoch_clock.path=")).split("=", 1)[1])
        epochs = [
            {"epoch": i, "start": 2.0 * i, "seconds": 1.0 + (i == 0), "validation_seconds": 0.1} for i in range(5)
        ]
        clock.write_text(json.dumps(epochs))
        return subprocess.CompletedProcess(command, 0, "[rnnlab] vanilla-custom-h128 test/acc=0.9120 run_dir=x", "")

    monkeypatch.setattr(gpu_check_runs, "run_command", fake_run)
    outcome = gpu_check_runs.part_runs(fake_context(tmp_path), deadline=time.monotonic() + 60)
    assert len(calls) == 3 and outcome.status == "overran"
    assert outcome.headline == "stopped at its budget, 2 of 6 runs done; custom / cuDNN s/epoch: vanilla 1.0×"
    lines = outcome.body.splitlines()
    assert "| vanilla | custom | 1.000 | 2.000 | 0.100 | 2.000 | " in lines[2] and lines[2].endswith("| 0.9120 |")
    assert lines[4].startswith("| gru | custom | stopped (budget) |")
    assert lines[5].startswith("| gru | builtin | not run (budget spent) |")
    assert "trainer=gpu" in calls[0] and "model.impl=custom" in calls[0] and "trainer.max_epochs=5" in calls[0]


def test_the_sweep_part_checks_the_stored_trials(tmp_path, monkeypatch):
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def fake_sweep(command, deadline, env=None, cwd=None):
        storage = next(c for c in command if c.startswith("hydra.sweeper.storage=")).split("=", 1)[1]
        add_trials(storage, "gpu-check", [(0, 0 if i < 4 else 10, 10 if i < 4 else 20) for i in range(8)])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(gpu_check_sweep, "run_command", fake_sweep)
    outcome = gpu_check_sweep.part_sweep(fake_context(tmp_path), deadline=time.monotonic() + 60)
    assert outcome.status == "passed", outcome.body
    assert outcome.headline == "8 trials complete, up to 4 at once"
    assert "- [x] trials overlapped: at most 4 trials ran at once" in outcome.body.splitlines()


@pytest.mark.parametrize("kind", KINDS)
def test_the_parity_helper_compares_like_with_like_on_cpu(kind):
    # What the cuDNN parity tests run, on the CPU: every output, state and gradient pairs up, in torch's layout.
    results = both_on(kind, 2, True, torch.float64, device="cpu")
    assert len(results["custom"]) == len(results["builtin"]) == 1 + 2 * (kind == "lstm") + 2 + 1 + 16
    for ours, theirs in zip(results["custom"], results["builtin"]):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_a_profile_is_read_through_its_chrome_trace():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        torch.ones(10).mul(2)
    events = gpu_probes.trace_events(profiler)
    assert "aten::mul" in {e.get("name") for e in events if e.get("cat") == "cpu_op"}
    assert gpu_probes.host_to_device_copies(events) == [] and gpu_probes.count_kernels(events) == 0


def test_tf32_is_off_inside_and_restored_after():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with tf32_off():
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
