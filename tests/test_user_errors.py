"""A user's mistake is one ``error:`` line naming the value and what is allowed, before anything is written.

Every row runs the command as a user would (``run_cli``) and checks: a non-zero exit, exactly one stderr line
starting with ``error:`` that names the value, and no file or directory created or changed under the
command's RNNLAB_ROOT (no run directory, no ``eval``/``generate`` version, no data cache).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, TINY, assert_refused, read_scalars, run_cli, run_clis, tree

CELLS = ("vanilla", "gru", "lstm")


# ----------------------------------------------------------------------------------------- train.py config values


BAD_TRAINING_VALUES = [
    (["model.optimizer.lr=inf"], ["model.optimizer.lr=inf", "must be a finite number"]),
    (["model.optimizer.lr=nan"], ["model.optimizer.lr=nan", "must be a finite number"]),
    (["model.optimizer.lr=-inf"], ["model.optimizer.lr=-inf", "must be a finite number"]),
    (["threads=0"], ["threads=0", "must be an integer >= 1, or null"]),
    (["threads=-2"], ["threads=-2", "must be an integer >= 1, or null"]),
    (["threads=abc"], ["threads='abc'", "must be an integer >= 1"]),
    (["seed=-1"], ["seed=-1", "must be an integer in 0..4294967295"]),
    (["seed=abc"], ["seed='abc'", "must be an integer in 0..4294967295"]),
    (["seed=1.5"], ["seed=1.5", "must be an integer in 0..4294967295"]),
    (["seed=4294967296"], ["seed=4294967296", "must be an integer in 0..4294967295"]),
    (["seed=1" + "0" * 400], ["seed=1000", "must be an integer in 0..4294967295"]),
    (["model.hidden_size=1e400"], ["model.hidden_size=inf", "must be an integer"]),
    (["data=sine", "data.seq_len=-1"], ["data.seq_len=-1", "must be an integer >= 2"]),
    (["data=text_char", "data.vocab_size=1"], ["data.vocab_size=1", "must be an integer >= 2"]),
    (["data=text_char", "data.path=/bin/ls"], ["data.path='/bin/ls'", "UTF-8 text"]),
    (["data.eval_batch_size=0"], ["data.eval_batch_size=0", "positive integer"]),
    (["++data.shift=2"], ["data.shift is not an argument of MNIST1DDataModule", "allowed: data_dir"]),
    (["model=base/recurrent"], ["model.cell is required", "give model.cell=<value>"]),  # a base with no cell
    # Lightning: a traceback from its clipping at the first step; a negative value turned clipping off unsaid
    (["trainer.gradient_clip_val=nan"], ["trainer.gradient_clip_val=nan", "a finite number >= 0, or null"]),
    (["trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val=-1", "a finite number >= 0, or null"]),
    (["trainer.check_val_every_n_epoch=0"], ["trainer.check_val_every_n_epoch=0", "an integer >= 1"]),  # 0 divides
    (["trainer.log_every_n_steps=0"], ["trainer.log_every_n_steps=0", "an integer >= 1"]),
    (["trainer.devices=0"], ["trainer.devices=0", "-1 for every device, 'auto', or a list of device indices"]),
    (["trainer.devices=abc"], ["trainer.devices='abc'", "-1 for every device"]),
    (["trainer.deterministic=maybe"], ["trainer.deterministic='maybe'", "must be true, false, 'warn' or null"]),
    (["trainer.enable_progress_bar=maybe"], ["trainer.enable_progress_bar='maybe'", "must be true or false"]),
    # a truthy string: a traceback from inside the LSTM (bidirectional), or taken as true
    (["model.bidirectional=maybe"], ["model.bidirectional='maybe'", "must be true or false"]),
    (["model.compile=maybe"], ["model.compile='maybe'", "must be true or false"]),
    (["model.optimizer.fused=maybe"], ["model.optimizer.fused='maybe'", "must be true, false or null"]),
    # trained to NaN without a word
    (["model.forget_bias=nan"], ["model.forget_bias=nan", "a finite number, or null"]),
    (["data.augment.scale=nan"], ["data.augment.scale=nan", "a finite non-negative number"]),
    (["data.augment.noise=inf"], ["data.augment.noise=inf", "a finite non-negative number"]),
    (["model.scheduler.pct_start=1.5"], ["model.scheduler.pct_start=1.5", "a number in 0..1"]),  # was moved unsaid
    (["optimized_mode=up"], ["optimized_mode='up'", "allowed: max, min"]),  # a 77-line traceback
]


@pytest.fixture(scope="module")
def refused_training(tmp_path_factory) -> list[tuple[object, Path]]:
    """(result, RNNLAB_ROOT) of ``train.py`` with each of BAD_TRAINING_VALUES, each root empty beforehand."""
    roots = [tmp_path_factory.mktemp("bad-value") for _ in BAD_TRAINING_VALUES]
    results = run_clis(
        [("train.py", [*TINY, *overrides], root) for (overrides, _), root in zip(BAD_TRAINING_VALUES, roots)]
    )
    return list(zip(results, roots))


@pytest.mark.parametrize("row", range(len(BAD_TRAINING_VALUES)), ids=[" ".join(o)[:40] for o, _ in BAD_TRAINING_VALUES])
def test_a_bad_training_value_is_one_line_and_writes_nothing(refused_training, row):
    result, root = refused_training[row]
    assert_refused(result, root, {}, *BAD_TRAINING_VALUES[row][1])


@pytest.mark.parametrize("devices", [1, 2, -1, "auto", "1", "-1", "0,1", "0,", [0], [0, 1]])
def test_every_form_lightning_takes_for_devices_is_allowed(devices):
    from rnnlab.app.validate import check_devices

    check_devices(devices)


@pytest.mark.parametrize("devices", [0, -2, "0", "", "abc", "0,a", [], [-1], [True], True, 1.5, None])
def test_a_device_count_or_list_lightning_would_refuse_is_one_line(devices):
    from rnnlab.app.validate import check_devices
    from rnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^trainer\.devices=.* is not allowed; must be an integer >= 1, -1"):
        check_devices(devices)


def test_a_comparison_of_zero_seeds_is_refused(tmp_path):
    result = run_cli("train.py", "-m", "experiment=compare_cells", "compare.seeds=0", *TINY, root=tmp_path)
    assert_refused(result, tmp_path, {}, "compare.seeds=0", "must be >= 1")


def test_a_multirun_with_a_bad_shared_value_is_refused_before_any_job(tmp_path):
    result = run_cli("train.py", "-m", "model=gru,lstm", *TINY, "threads=0", root=tmp_path)
    assert_refused(result, tmp_path, {}, "threads=0", "must be an integer >= 1")


@pytest.mark.parametrize("script, key", [("eval.py", "ckpt_path"), ("generate.py", "ckpt")])
def test_a_missing_checkpoint_argument_says_what_to_give(tmp_path, script, key):
    result = run_cli(script, root=tmp_path)
    assert_refused(result, tmp_path, {}, f"{key} is required; give {key}=<run dir>/checkpoints/last.ckpt")


def test_an_apostrophe_in_a_prompt_says_how_to_quote_it(tmp_path):
    result = run_cli("generate.py", "ckpt=x.ckpt", "prompt=don't", root=tmp_path)
    assert_refused(result, tmp_path, {}, "prompt=don't cannot be parsed", 'prompt="don\'t"')


# ------------------------------------------------------------------------------------- a one-cycle run too short


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 8, 40])
def test_one_cycle_fits_any_number_of_steps(steps):
    import torch

    from rnnlab.models import one_cycle

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=0.01)
    schedule = one_cycle(optimizer, steps, max_lr=0.01, pct_start=0.25)
    rates = []
    for _ in range(steps):  # as Lightning steps it: after every optimiser step, the last one included
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.01 / 25)  # the warm-up starts low
    if steps >= 2:
        assert max(rates) == pytest.approx(0.01) and rates[1] > rates[0]  # and reaches the peak
    if steps >= 3:
        assert rates[-1] < 0.01 / 25  # then anneals
    if steps >= 8:  # long enough for pct_start=0.25: torch's own schedule, unchanged
        assert rates.index(max(rates)) == steps // 4 - 1


def test_one_cycle_runs_shorter_than_their_warm_up_train(tmp_path, data_dir):
    # 1 epoch of 4 batches (a 1-step warm-up at pct_start=0.25) and of 1 batch, each cell: 6 jobs, one process.
    unswept = [arg for arg in TINY if "limit_train_batches" not in arg]  # swept below
    result = run_cli(
        "train.py",
        "-m",
        *unswept,
        "model=" + ",".join(CELLS),
        "++trainer.limit_train_batches=1,4",
        f"paths.data_dir={data_dir}",
        root=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in (tmp_path / "multirun").rglob("config.yaml") if p.parent.name.isdigit())
    assert len(jobs) == 6
    for job in jobs:
        scalars = read_scalars(job)
        assert math.isfinite(scalars["test/loss"][-1][1]), job
        learning_rates = [value for tag, points in scalars.items() if tag.startswith("lr") for _, value in points]
        assert learning_rates and all(0 < lr < math.inf for lr in learning_rates), (job, learning_rates)


# -------------------------------------------------------------------------------------- checkpoints and generation


def train_run(root: Path, data_dir: Path, *overrides: str) -> Path:
    result = run_cli("train.py", *TINY, "~model/scheduler", *overrides, f"paths.data_dir={data_dir}", root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return next((root / "logs").rglob("last.ckpt"))


@pytest.fixture(scope="module")
def mnist_ckpt(tmp_path_factory, data_dir) -> Path:
    """last.ckpt of a tiny MNIST-1D run (classification: not generative)."""
    return train_run(tmp_path_factory.mktemp("mnist"), data_dir, "model=gru")


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory, data_dir) -> Path:
    """last.ckpt of a tiny character-level run on a small corpus (lower-case letters, spaces, apostrophes)."""
    root = tmp_path_factory.mktemp("text")
    corpus = root.parent / f"{root.name}-corpus.txt"
    corpus.write_text("don't stop the rhythm of the river; it isn't over yet\n" * 40)
    return train_run(root, data_dir, "data=text_char", f"data.path={corpus}", "data.seq_len=20", "data.batch_size=8")


def copy_run(ckpt: Path, root: Path) -> Path:
    """The checkpoint's run directory copied under ``root``; returns the copy's last.ckpt."""
    run_dir = ckpt.parent.parent
    shutil.copytree(run_dir, root / "logs" / "run")
    return root / "logs" / "run" / "checkpoints" / ckpt.name


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_truncated_checkpoint_is_refused(tmp_path, mnist_ckpt, script):
    ckpt = copy_run(mnist_ckpt, tmp_path)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = tree(tmp_path)
    result = run_cli(script, f"ckpt_path={ckpt}", root=tmp_path)
    assert_refused(result, tmp_path, before, f"ckpt_path='{ckpt}' is not a readable checkpoint")


def test_a_corrupted_run_config_is_refused(tmp_path, mnist_ckpt):
    ckpt = copy_run(mnist_ckpt, tmp_path)
    (ckpt.parent.parent / "config.yaml").write_text("model: [unclosed\n")
    before = tree(tmp_path)
    result = run_cli("eval.py", f"ckpt_path={ckpt}", root=tmp_path)
    assert_refused(result, tmp_path, before, "config.yaml is not a readable run config")


def test_generating_from_a_classifier_is_refused(tmp_path, mnist_ckpt):
    ckpt = copy_run(mnist_ckpt, tmp_path)
    before = tree(tmp_path)
    result = run_cli("generate.py", f"ckpt={ckpt}", root=tmp_path)
    assert_refused(result, tmp_path, before, f"ckpt='{ckpt}'", "classification", "cannot generate")


BAD_GENERATION_ARGUMENTS = [
    ("temperature=-1", ["temperature=-1", "must be >= 0"]),
    ("temperature=nan", ["temperature=nan", "must be a finite number"]),
    ("length=0", ["length=0", "must be >= 1"]),
    ("length=-5", ["length=-5", "must be >= 1"]),
    ("prompt=''", ["prompt=''", "give some text"]),
    ("top_k=0", ["top_k=0", "must be >= 1"]),
    ("top_k=-3", ["top_k=-3", "must be >= 1"]),
    (
        "prompt='Zebra ÿ'",
        ["prompt='Zebra ÿ'", "characters outside the run's vocabulary of 19 tokens: 'Z', 'a', 'b', 'ÿ'"],
    ),
]


@pytest.fixture(scope="module")
def refused_generation(tmp_path_factory, text_ckpt) -> list[tuple[object, Path, dict]]:
    """(result, RNNLAB_ROOT, its tree before) of ``generate.py`` with each of BAD_GENERATION_ARGUMENTS, each on
    its own copy of the text run."""
    cases = []
    for _ in BAD_GENERATION_ARGUMENTS:
        root = tmp_path_factory.mktemp("bad-generation")
        cases.append((root, copy_run(text_ckpt, root), tree(root)))
    results = run_clis(
        [
            ("generate.py", [f"ckpt={ckpt}", argument], root)
            for (argument, _), (root, ckpt, _) in zip(BAD_GENERATION_ARGUMENTS, cases)
        ]
    )
    return [(result, root, before) for result, (root, _, before) in zip(results, cases)]


@pytest.mark.parametrize("row", range(len(BAD_GENERATION_ARGUMENTS)), ids=[a for a, _ in BAD_GENERATION_ARGUMENTS])
def test_a_bad_generation_argument_is_refused(refused_generation, row):
    result, root, before = refused_generation[row]
    assert_refused(result, root, before, *BAD_GENERATION_ARGUMENTS[row][1])


def test_a_quoted_prompt_with_an_apostrophe_generates(tmp_path, text_ckpt):
    ckpt = copy_run(text_ckpt, tmp_path)
    result = run_cli("generate.py", f"ckpt={ckpt}", 'prompt="don\'t "', "length=5", "temperature=0", root=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sample = (ckpt.parent.parent / "generate" / "version_0" / "sample.txt").read_text()
    assert sample.startswith("don't ") and len(sample) == len("don't ") + 5


def test_generating_from_a_classifier_of_an_older_rnnlab_is_refused(tmp_path):
    # Checkpoints written before 2026-12-03 hold the task in another form (rnnlab.models.saved_task).
    shutil.copytree(ROOT / "tests" / "fixtures" / "legacy_runs", tmp_path / "logs")
    before = tree(tmp_path)
    ckpt = tmp_path / "logs" / "mnist1d" / "checkpoints" / "last.ckpt"
    result = run_cli("generate.py", f"ckpt={ckpt}", root=tmp_path)
    assert_refused(result, tmp_path, before, f"ckpt='{ckpt}'", "classification", "cannot generate")


@pytest.mark.parametrize(
    "argument, needles",
    [
        ("length=1000000000", ["seed_len + length = 100 + 1000000000", "give length <= 19900"]),
        ("seed_len=0", ["seed_len=0", "must be >= 1"]),
        ("split=training", ["split='training' is not allowed; allowed: test, train, val"]),
    ],
)
def test_a_bad_series_generation_argument_is_refused(tmp_path, argument, needles):
    shutil.copytree(ROOT / "tests" / "fixtures" / "legacy_runs", tmp_path / "logs")
    before = tree(tmp_path)
    ckpt = tmp_path / "logs" / "sine" / "checkpoints" / "last.ckpt"
    result = run_cli("generate.py", f"ckpt={ckpt}", argument, root=tmp_path)
    assert_refused(result, tmp_path, before, *needles)
