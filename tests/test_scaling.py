"""Scaling past one CPU, tested on CPU: trainer configs, DDP on 2 CPU processes, data shards on the training
device, torch.compile with its fallback, GPUs for parallel sweep trials, the SLURM launcher config."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF, TINY, read_image_tags, read_scalars, run_cli, tiny
from hydra_plugins.rnnlab_sweeper import placement
from hydra_plugins.rnnlab_sweeper.optuna_sweeper import RnnlabOptunaSweeper
from rnnlab.app.build import build, load_run
from rnnlab.app.launch import check_launch, relaunches_command
from rnnlab.app.train import train
from rnnlab.app.validate import validate
from rnnlab.data import EpochSeededBatchSampler, MNIST1DDataModule
from rnnlab.data.synthetic import SineDataModule
from rnnlab.devices import gpu_available, visible_gpu_names
from rnnlab.errors import ConfigError
from rnnlab.sweep.gpus import gpu_slots

TRAINERS = sorted(p.stem for p in (CONF / "trainer").glob("*.yaml"))
NO_GPU = pytest.mark.skipif(gpu_available(), reason="a GPU is visible here: the no-GPU behaviour cannot be seen")


# ------------------------------------------------------------------------------------------- trainer configs


def test_trainer_options():
    assert TRAINERS == ["cpu", "ddp", "ddp_sim", "default", "gpu"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_config_composes(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    expected = {  # accelerator, devices, strategy
        "default": ("auto", 1, None),
        "cpu": ("cpu", 1, None),
        "gpu": ("gpu", 1, None),
        "ddp": ("gpu", -1, "ddp"),
        "ddp_sim": ("cpu", 2, "ddp"),
    }[trainer]
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.get("strategy")) == expected
    assert cfg.trainer.precision == 32 and cfg.trainer.use_distributed_sampler is False
    if cfg.trainer.accelerator != "gpu":  # what runs here builds (a DDP trainer launches nothing until fit)
        validate(cfg)
        _, _, built = build(cfg)
        assert built.world_size == (2 if trainer == "ddp_sim" else 1)
        assert relaunches_command(built) == (trainer == "ddp_sim")


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32"])
def test_allowed_precisions_pass(make_cfg, precision):
    validate(make_cfg("trainer=cpu", f"trainer.precision={precision}"))


@pytest.mark.parametrize("precision", ["16", "64", "fp8"])
def test_other_precisions_are_named(make_cfg, precision):
    with pytest.raises(
        ConfigError,
        match=rf"^trainer.precision='{precision}' is not allowed; "
        r"allowed: 16-mixed, 32, bf16-mixed$",
    ):
        validate(make_cfg(f"trainer.precision={precision}"))


def test_mixed_precision_trains_regression_with_its_figures(make_cfg):
    # bf16-mixed is the mixed precision a CPU has (16-mixed becomes it there); custom cells under autocast
    cfg = make_cfg(
        "trainer=cpu",
        "trainer.precision=bf16-mixed",
        "data=sine",
        "data.series_len=2000",
        "model.impl=custom",
        "test=false",
    )
    metrics = train(cfg)
    assert 0 < metrics["val/mse"] < float("inf")
    assert "figures/generation" in read_image_tags(Path(cfg.paths.output_dir))


@NO_GPU
def test_a_gpu_trainer_without_a_gpu_stops_with_one_line(tmp_path):
    result = run_cli("train.py", "trainer=gpu", root=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: trainer.accelerator='gpu' needs a GPU, and none is visible here")
    assert "use trainer=cpu" in lines[0] and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # rejected before the run directory exists


@NO_GPU
@pytest.mark.parametrize("overrides", [["trainer=ddp"], ["trainer=default", "trainer.accelerator=cuda"]])
def test_every_gpu_accelerator_is_checked(make_cfg, overrides):
    with pytest.raises(ConfigError, match=r"needs a GPU, and none is visible here"):
        validate(make_cfg(*overrides))


def test_a_relaunching_ddp_run_is_refused_in_a_multirun(make_cfg, monkeypatch):
    _, _, trainer = build(make_cfg("trainer=ddp_sim"))
    check_launch(trainer)  # a single run: fine
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: SimpleNamespace(mode=RunMode.MULTIRUN)))
    with pytest.raises(ConfigError, match=r"trainer.strategy='ddp' with 2 processes cannot run in a multirun"):
        check_launch(trainer)
    _, _, single = build(make_cfg("trainer=cpu"))
    check_launch(single)  # one process: fine in a sweep


# ------------------------------------------------------------------------------------------- DDP on 2 CPU processes


def scores_on(run_dir: Path, checkpoint: str, split: str) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a checkpoint of ``run_dir`` on a whole split, in this one process."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    model = instantiate(cfg.model, task=datamodule.task)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / checkpoint, weights_only=False)["state_dict"])
    model.eval()
    x, y = datamodule.splits[split].x, datamodule.splits[split].y
    with torch.no_grad():
        logits = model(x)
    return float((logits.argmax(-1) == y).float().mean()), float(torch.nn.functional.cross_entropy(logits, y))


@pytest.mark.slow
def test_ddp_sim_trains_on_two_processes_and_logs_once(tmp_path, data_dir):
    # eval batches of 1000: one batch per split and rank (250 validation, 500 test samples each). 4 training
    # batches: the default one-cycle schedule is too short for its warm-up, and trains under DDP all the same.
    args = [*tiny(max_epochs=1, limit_train_batches=4, limit_val_batches=1, limit_test_batches=1), "trainer=ddp_sim"]
    result = run_cli("train.py", *args, f"paths.data_dir={data_dir}", root=tmp_path, process=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if line.startswith("[rnnlab] lstm-builtin-h8 params=")]
    assert len(summaries) == 1, summaries  # one summary line, from rank 0

    runs = tmp_path / "logs" / "mnist1d" / "lstm-builtin-h8" / "seed42"
    assert [p.name for p in runs.iterdir()] == ["version_0"]  # rank 1 reused rank 0's run directory
    run_dir = runs / "version_0"
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run_dir / "train_ddp_process_1.log").read_text()  # rank 1 ran

    # events.out.tfevents.<time>.<host>.<pid>.<n>: one writing process (a single-device run also writes one
    # file for fit and one for test); every event file anywhere is in this run directory (or its HPARAMS session)
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events and {path.parent for path in events} == {run_dir, run_dir / "hparams"}
    assert len({re.fullmatch(r".*\.(\d+)\.\d+", path.name).group(1) for path in events}) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    scalars = read_scalars(run_dir)
    for tag, points in scalars.items():
        if tag != "epoch":  # Lightning logs 'epoch' with every metric
            steps = [step for step, _ in points]
            assert len(steps) == len(set(steps)), (tag, points)  # nothing logged twice

    # Synced across ranks: the logged metrics are those of the whole splits, not of rank 0's half.
    val_acc, val_loss = scores_on(run_dir, "last.ckpt", "val")
    assert scalars["val/acc"][0][1] == pytest.approx(val_acc, abs=1e-6)
    assert scalars["val/loss"][0][1] == pytest.approx(val_loss, abs=1e-5)
    (test_acc,) = [v for _, v in scalars["test/acc"]]
    assert test_acc == pytest.approx(scores_on(run_dir, "best-epoch000.ckpt", "test")[0], abs=1e-6)
    assert f"test/acc={test_acc:.4f}" in summaries[0]


def test_eval_and_generation_load_a_ddp_run_on_one_process(make_cfg):
    cfg = make_cfg("test=false")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    saved = OmegaConf.load(run_dir / "config.yaml")
    saved.trainer = OmegaConf.merge(saved.trainer, make_cfg("trainer=ddp_sim").trainer)  # as a DDP run saves it
    OmegaConf.save(saved, run_dir / "config.yaml")
    _, _, trainer = load_run(str(run_dir / "checkpoints" / "last.ckpt"), str(run_dir / "eval"))
    assert trainer.world_size == 1 and not relaunches_command(trainer)  # testing here would not re-run pytest


# ------------------------------------------------------------------------------------------- data shards on the device


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
def test_shards_cover_every_sample_once_with_equal_batch_counts(shuffle, replicas):
    for num_samples in (4, 5, 9, 10, 17, 101):
        for batch_size in (1, 2, 3, 7, 100):
            if num_samples < replicas:
                continue
            shards = [
                list(
                    EpochSeededBatchSampler(num_samples, batch_size, shuffle, seed=3, rank=rank, num_replicas=replicas)
                )
                for rank in range(replicas)
            ]
            counts = {len(shard) for shard in shards}
            assert len(counts) == 1, (num_samples, batch_size)  # DDP needs the same number of steps everywhere
            assert counts.pop() == len(EpochSeededBatchSampler(num_samples, batch_size, shuffle, 3, 0, replicas))
            assert all(len(batch) > 0 for shard in shards for batch in shard)
            assert sorted(torch.cat([b for shard in shards for b in shard]).tolist()) == list(range(num_samples))


def test_one_process_batches_are_unchanged_and_shards_are_deterministic():
    sampler = EpochSeededBatchSampler(10, batch_size=4, shuffle=True, seed=5)
    sampler.set_epoch(2)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5 * 1_000_003 + 2))
    assert [b.tolist() for b in sampler] == [b.tolist() for b in order.split(4)]

    def rank_batches(rank):
        shard = EpochSeededBatchSampler(10, batch_size=2, shuffle=True, seed=5, rank=rank, num_replicas=2)
        shard.set_epoch(2)
        return [b.tolist() for b in shard]

    assert rank_batches(1) == rank_batches(1) != rank_batches(0)
    assert [sorted(a + b) for a, b in zip(rank_batches(0), rank_batches(1))] == [sorted(b) for b in order.split(4)]
    with pytest.raises(ValueError, match="3 samples cannot be shared by 4 processes"):
        EpochSeededBatchSampler(3, 1, False, 0, rank=0, num_replicas=4)


def fake_trainer(device: str, rank: int = 0, world_size: int = 1):
    return SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=rank, world_size=world_size
    )


def test_splits_move_to_the_training_device_once(data_dir):
    datamodule = MNIST1DDataModule(data_dir=str(data_dir))
    datamodule.setup()
    datamodule.trainer = fake_trainer("meta")  # stands for a GPU: no host-to-device copy per batch
    loader = datamodule.train_dataloader()
    x, y = next(iter(loader))
    assert x.device.type == "meta" and y.device.type == "meta" and x.shape == (100, 40, 1)
    moved = datamodule.splits["train"].x
    assert moved.device.type == "meta"
    datamodule.train_dataloader()
    assert datamodule.splits["train"].x is moved  # moved once, kept there


def test_each_rank_loads_its_own_shard(data_dir):
    def rows(rank: int, world_size: int, split: str) -> list[tuple]:
        datamodule = MNIST1DDataModule(data_dir=str(data_dir))
        datamodule.setup()
        datamodule.trainer = fake_trainer("cpu", rank, world_size)
        loader = datamodule.train_dataloader() if split == "train" else datamodule.val_dataloader()
        return [tuple(row.flatten().tolist()) for x, _ in loader for row in x]

    for split, size in (("train", 3500), ("val", 500)):
        rank0, rank1 = rows(0, 2, split), rows(1, 2, split)
        assert len(rank0) == len(rank1) == size // 2 and not set(rank0) & set(rank1)
        assert Counter(rank0 + rank1) == Counter(rows(0, 1, split))


def test_stateful_streams_are_split_between_ranks():
    datamodule = SineDataModule(series_len=2000, seq_len=10, stateful=True, batch_size=4)
    whole = list(datamodule.train_dataloader())
    datamodule.trainer = fake_trainer("cpu", 1, 2)
    shard = list(datamodule.train_dataloader())
    assert len(shard) == len(whole)  # the same chunks in time order, half of the streams
    assert all(torch.equal(s[0], w[0][1::2]) and torch.equal(s[1], w[1][1::2]) for s, w in zip(shard, whole))
    assert all(s[0].is_contiguous() and s[1].is_contiguous() for s in shard)  # metrics .view() them


# ------------------------------------------------------------------------------------------- torch.compile


def test_compile_failing_at_construction_falls_back_with_a_warning(make_cfg, monkeypatch):
    def unsupported(fn, **kwargs):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unsupported)
    cfg = make_cfg("model.compile=true")
    datamodule = instantiate(cfg.data)
    torch.manual_seed(0)
    with pytest.warns(
        RuntimeWarning,
        match=r"torch.compile failed for SequenceClassifier \(RuntimeError: "
        r"torch.compile is not supported on this platform\)",
    ):
        compiled = instantiate(cfg.model, task=datamodule.task)
    torch.manual_seed(0)
    eager = instantiate(make_cfg("model.compile=false").model, task=datamodule.task)
    x = torch.randn(3, 40, 1)
    assert torch.equal(compiled(x), eager(x))


def test_compile_failing_on_a_call_falls_back_once(make_cfg, monkeypatch):
    calls = []

    def failing_compiler(fn, **kwargs):
        def compiled(*args):
            calls.append(args)
            raise RuntimeError("BackendCompilerFailed: no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compiler)
    cfg = make_cfg("model.compile=true")
    model = instantiate(cfg.model, task=instantiate(cfg.data).task)
    x = torch.randn(3, 40, 1)
    with pytest.warns(RuntimeWarning, match=r"no C\+\+ compiler\); running it uncompiled"):
        first = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = model(x)  # no second attempt, no second warning
    assert len(calls) == 1 and torch.equal(first, second) and first.shape == (3, 10)


@pytest.mark.slow
def test_compile_true_trains_a_tiny_run_compiled(make_cfg):
    cfg = make_cfg("model.compile=true", "test=false")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        metrics = train(cfg)
    assert 0.0 <= metrics["val/acc"] <= 1.0
    assert "grad_norm/first_over_last" in read_scalars(Path(cfg.paths.output_dir))  # hooks still see the steps


# ------------------------------------------------------------------------------------------- GPUs for sweep trials


@pytest.mark.parametrize("n_gpus", [1, 2, 4, 8])
@pytest.mark.parametrize("n_jobs", range(1, 9))
@pytest.mark.parametrize("trials_per_gpu", [1, 2, 3])
def test_gpu_slots(n_gpus, n_jobs, trials_per_gpu):
    slots = gpu_slots(n_jobs, n_gpus, trials_per_gpu)
    assert len(slots) == min(n_jobs, n_gpus * trials_per_gpu)  # as many at once as the GPUs may hold
    assert all(0 <= gpu < n_gpus for gpu in slots)  # never out of range
    per_gpu = Counter(slots)
    assert max(per_gpu.values()) <= trials_per_gpu  # sharing only as allowed
    assert len(per_gpu) == min(len(slots), n_gpus)  # every GPU in use before any is shared
    assert max(per_gpu.values()) - min(per_gpu.values()) <= 1
    if trials_per_gpu == 1:
        assert len(set(slots)) == len(slots)  # each trial its own GPU


def test_no_gpu_slots_without_gpus_and_bad_arguments_are_named():
    assert gpu_slots(4, 0) == []
    with pytest.raises(ValueError, match="trials_per_gpu=0"):
        gpu_slots(2, 2, 0)


def test_visible_gpu_names_follow_cuda_visible_devices():
    assert visible_gpu_names({"CUDA_VISIBLE_DEVICES": "2,5"}, 2) == ["2", "5"]
    assert visible_gpu_names({"CUDA_VISIBLE_DEVICES": "3, 1,7"}, 2) == ["3", "1"]  # torch sees what CUDA counts
    assert visible_gpu_names({}, 3) == ["0", "1", "2"]


LAUNCHERS = {  # Hydra _target_ of each launcher
    "BasicLauncher": "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "JoblibLauncher": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "SlurmLauncher": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
}


def planned(
    monkeypatch,
    n_gpus: int,
    accelerator: str = "gpu",
    launcher: str = "JoblibLauncher",
    n_jobs: int = 8,
    trials_per_gpu: int = 1,
):
    """The sweeper's (trials at once, overrides, GPU per parallel trial) with ``n_gpus`` visible."""
    monkeypatch.setattr("rnnlab.devices.cuda_device_count", lambda: n_gpus)
    sweeper = RnnlabOptunaSweeper(
        "sqlite://", "s", "max", 1, 1.0, 10, 30, 5, None, None, {}, trials_per_gpu=trials_per_gpu
    )
    sweeper.check()
    config = OmegaConf.create(
        {
            "trainer": {"accelerator": accelerator},
            "hydra": {"launcher": {"_target_": LAUNCHERS[launcher], "n_jobs": n_jobs}},
        }
    )
    where = placement.plan(config, sweeper.n_jobs, sweeper.trials_per_gpu)
    return where.parallel, where.overrides, where.gpus


def test_the_sweeper_gives_each_parallel_trial_a_gpu(monkeypatch, capsys):
    assert planned(monkeypatch, 4, n_jobs=8, trials_per_gpu=2) == (8, [], [0, 1, 2, 3, 0, 1, 2, 3])
    assert planned(monkeypatch, 2, n_jobs=4) == (2, [], [0, 1])  # one trial per GPU: 2 at a time
    assert planned(monkeypatch, 8, n_jobs=1, launcher="BasicLauncher") == (1, [], [0])
    assert planned(monkeypatch, 2, accelerator="cpu", n_jobs=4) == (4, [], [None] * 4)  # not a GPU sweep
    assert planned(monkeypatch, 0, launcher="SlurmLauncher", n_jobs=3) == (3, [], [None] * 3)  # the cluster's GPUs
    assert capsys.readouterr().out == ""


def test_without_gpus_the_sweeper_falls_back_to_cpu_with_one_line(monkeypatch, capsys):
    assert planned(monkeypatch, 0, n_jobs=2) == (2, ["trainer.accelerator=cpu", "trainer.devices=1"], [None, None])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[rnnlab] no GPU visible") and "trials run on CPU" in lines[0]
    with pytest.raises(ValueError, match=r"hydra.sweeper.trials_per_gpu=0 is not allowed"):
        planned(monkeypatch, 2, trials_per_gpu=0)


@NO_GPU
@pytest.mark.slow
def test_a_gpu_sweep_runs_on_cpu_where_there_is_no_gpu(tmp_path, data_dir):
    result = run_cli(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "trainer=gpu",
        "hydra.sweeper.n_trials=1",
        *TINY,
        f"paths.data_dir={data_dir}",
        root=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert len(re.findall(r"\[rnnlab\] no GPU visible .*trials run on CPU", result.stdout)) == 1
    study = optuna.load_study(study_name="mnist1d-lstm", storage=f"sqlite:///{tmp_path}/multirun/optuna.db")
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE" and "gpu" not in trial.user_attrs
    trial_cfg = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / "config.yaml").read_text())
    assert trial_cfg["trainer"]["accelerator"] == "cpu"


def test_slurm_launcher_config_asks_one_gpu_per_task(make_cfg):
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher",
        reason="hydra-submitit-launcher is not installed: pip install -e '.[slurm]'",
    )
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            ["hparams_search=optuna", "trainer=gpu", "hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.gpus_per_task, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert launcher.array_parallelism == 4
