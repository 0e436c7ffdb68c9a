"""What a study owns and remembers, what a sweep prints, and the configs users already have: the published
plugin's example app and options, lightning-hydra-template's hparams_search file, grids, several objectives."""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from fixtures.sweep_runs import SPHERE, TEMPLATE, assert_one_error_line, run_app, snapshot
from helpers import compose_config, read_scalars, recipe_code, run_cli
from rnnlab import budget

TINY = [
    "-m",
    "hparams_search=optuna",
    *budget.overrides(limit_val_batches=1),
    "hydra.sweeper.n_trials=1",
]


def trials_of(storage: str, name: str) -> list:
    return sorted(optuna.load_study(study_name=name, storage=storage).trials, key=lambda t: t.number)


@pytest.mark.slow
def test_a_study_owns_its_folders_and_remembers_its_fixed_overrides(tmp_path, data_dir):
    args = [*TINY, f"paths.data_dir={data_dir}"]
    first = run_cli("train.py", *args, root=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep_dir = tmp_path / "multirun" / "mnist1d" / "mnist1d-lstm"
    events = tmp_path / "logs" / "mnist1d" / "sweeps" / "mnist1d-lstm" / "trial_0"
    steps = [step for step, _ in read_scalars(events)["val/acc"]]
    owned = snapshot(sweep_dir)

    # best.yaml's trial_command reproduces the trial: its trial_overrides compose the trial's config
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    trial_cfg = yaml.safe_load((sweep_dir / "trial_0" / "config.yaml").read_text())
    again = compose_config("train", best["trial_overrides"], tmp_path / "again", data_dir)
    assert again.trainer.max_epochs == trial_cfg["trainer"]["max_epochs"] == 2
    assert again.model.optimizer.lr == pytest.approx(trial_cfg["model"]["optimizer"]["lr"])
    assert again.test is False and "hparams_search=optuna" in best["trial_command"]
    assert "hparams_search" not in best["command"] and "trainer.max_epochs=2" in best["command"]

    # continuing it with another budget is refused, naming the difference; nothing changes
    refused = run_cli("train.py", *args, "trainer.max_epochs=3", "hydra.sweeper.n_trials=2", root=tmp_path)
    assert_one_error_line(
        refused, "study 'mnist1d-lstm' was started with other fixed overrides", "max_epochs=2 (now 3)"
    )
    assert (
        snapshot(sweep_dir) == owned and len(trials_of(f"sqlite:///{tmp_path}/multirun/optuna.db", "mnist1d-lstm")) == 1
    )

    # a new storage with the same study name: another study, its own folders
    other = f"hydra.sweeper.storage=sqlite:///{tmp_path}/other.db"
    second = run_cli("train.py", *args, other, root=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "belongs to another study 'mnist1d-lstm'" in second.stdout
    assert snapshot(sweep_dir) == owned  # trial_0, .hydra, best.yaml of the first study as they were
    assert (sweep_dir.with_name("mnist1d-lstm_2") / "trial_0" / ".hydra").is_dir()
    assert [step for step, _ in read_scalars(events)["val/acc"]] == steps  # no events of the new trial 0 mixed in
    assert read_scalars(events.parent.with_name("mnist1d-lstm_2") / "trial_0")["val/acc"]


def test_the_published_sphere_example_runs_and_prints_its_progress(tmp_path):
    result = run_app(SPHERE, "-m", "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[sweep] trial")]
    # One numbering: the Optuna trial number (the trial_<n> folders, the table, best.yaml), the count apart.
    starts = [line for line in lines if " started" in line]
    assert [line.split(" (")[0] for line in starts] == ["[sweep] trial 0", "[sweep] trial 1", "[sweep] trial 2"]
    assert [line.split(") ")[-1] for line in starts] == [f"started, {k} of 3 in this sweep" for k in (1, 2, 3)]
    assert "... done: objective=" in lines[1] and "best objective=" in lines[1] and "left for 2 more" in lines[1]
    assert result.stderr.strip() == ""
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")  # Hydra's own timestamped sweep dir
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert results["name"] == "optuna" and results["best_value"] == best["value"] == min(
        t.value for t in trials_of(f"sqlite:///{tmp_path}/multirun/optuna.db", "sphere")
    )
    assert set(results["best_params"]) == {"x", "y"} and best["direction"] == "minimize"
    assert lines[-1].split("best objective=")[1].endswith(f"(trial {best['trial']})")  # the number best.yaml names

    rerun = run_app(SPHERE, "-m", "hydra.sweeper.n_trials=3", cwd=tmp_path)  # a finished study
    assert rerun.returncode == 0 and "already holds its 3 trials: raise hydra.sweeper.n_trials" in rerun.stdout


def test_the_templates_hparams_search_file_runs_with_only_name_and_target_changed(tmp_path):
    result = run_app(TEMPLATE, "hparams_search=mnist_optuna", "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # storage: null -> multirun/optuna.db where the command ran; study_name: null -> the app's job name
    trials = trials_of(f"sqlite:///{tmp_path}/multirun/optuna.db", "train")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert set(trials[0].params) == {
        "model.optimizer.lr", "datamodule.batch_size", "model.net.lin1_size", "model.net.lin2_size",
        "model.net.lin3_size",
    }  # fmt: skip
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(t.value for t in trials)  # direction: maximize


@pytest.mark.parametrize("sampler", ["brute_force", "grid"])
def test_a_grid_ends_normally_once_every_point_is_tried(tmp_path, sampler):
    args = ["-m", f"hydra/sweeper/sampler={sampler}", "x=choice(0,1)", "y=range(0,2)", "hydra.sweeper.n_trials=6"]
    result = run_app(SPHERE, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = trials_of(f"sqlite:///{tmp_path}/multirun/optuna.db", "sphere")
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (
        "4 COMPLETE; top 4 by minimize" in result.stdout and "tried every point of its grid (4 points" in result.stdout
    )
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert yaml.safe_load((sweep_dir / "best.yaml").read_text())["value"] == 0


@pytest.mark.parametrize("sampler", ["qmc", "nsgaii"])
def test_optuna_samplers_as_config_groups(tmp_path, sampler):
    result = run_app(SPHERE, "-m", f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="sphere", storage=f"sqlite:///{tmp_path}/multirun/optuna.db")
    assert len(study.trials) == 2 and all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.fixture
def toy_sampler(monkeypatch):
    """The docs/development.md "Adding a sampler" class, registered as ``toy`` for this test only (its module is
    ``toy_sampler``, so Hydra finds its ``_target_``)."""
    from hydra.core.config_store import ConfigStore

    from hydra_plugins.rnnlab_sweeper.samplers import SAMPLERS

    monkeypatch.setattr(SAMPLERS, "_items", dict(SAMPLERS._items))
    module = types.ModuleType("toy_sampler")
    monkeypatch.setitem(sys.modules, "toy_sampler", module)
    exec(recipe_code("Adding a sampler").replace("<name>", "toy"), module.__dict__)
    yield "toy"
    ConfigStore.instance().repo["hydra"]["sweeper"]["sampler"].pop("toy.yaml")


def sweep_in_process(monkeypatch, script: Path, *args: str) -> None:
    """``python <script> -m <args>`` in this process (real Hydra, the basic launcher runs trials in-process)."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", [str(script), "-m", *args])
    GlobalHydra.instance().clear()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        GlobalHydra.instance().clear()


def test_a_sampler_added_as_the_recipe_says_runs_a_sweep(tmp_path, monkeypatch, toy_sampler):
    from hydra_plugins.rnnlab_sweeper.samplers import build_sampler

    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = [f"hydra/sweeper/sampler={toy_sampler}", "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage='{storage}'"]
    sweep_in_process(monkeypatch, SPHERE, *args, f"hydra.sweep.dir={tmp_path}/sweep")
    trials = trials_of(storage, "sphere")
    assert [(t.state, t.params, t.value) for t in trials] == [(TrialState.COMPLETE, {"x": -5.5, "y": -5}, 55.25)] * 2
    with pytest.raises(ValueError, match=r"allowed: an Optuna sampler \(hydra/sweeper/sampler=tpe, .*, toy\)"):
        build_sampler({"_target_": "nowhere.NoSampler"}, {})  # the allowed list is the registry's


def test_trial_overrides_tell_a_plain_app_its_trial(tmp_path, monkeypatch):
    """The sweeper knows no app's keys: what a trial is told comes from ``hydra.sweeper.trial_overrides``."""
    templates = "['z={number}','w={number}','++note=trial {number} of {sweep_folder}','++first={first_metric}']"
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = [
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage='{storage}'",
        f"hydra.sweeper.trial_overrides={templates}",
    ]
    sweep_in_process(monkeypatch, SPHERE, *args, f"hydra.sweep.dir={tmp_path}/sweep")
    for trial in trials_of(storage, "sphere"):
        overrides = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / ".hydra" / "overrides.yaml").read_text())
        n = trial.number
        # w: not a key of the app's config; {first_metric}: one objective, no value
        assert overrides[-2:] == [f"z={n}", f"++note=trial {n} of sweep"]
        assert yaml.safe_load((Path(trial.user_attrs["run_dir"]) / ".hydra" / "config.yaml").read_text())["z"] == n


@pytest.mark.parametrize("plus", ["", "+"])
def test_a_custom_search_space_as_published(tmp_path, plus):
    result = run_app(SPHERE, "-m", f"{plus}hydra.sweeper.custom_search_space=space.configure",
                     "hydra.sweeper.n_trials=2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for trial in trials_of(f"sqlite:///{tmp_path}/multirun/optuna.db", "sphere"):
        assert set(trial.params) == {"x", "y", "z", "+w"} and abs(trial.params["z"] - trial.params["x"]) <= 0.5
        overrides = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / ".hydra" / "overrides.yaml").read_text())
        assert any(o.startswith("+w=") for o in overrides) and any(o.startswith("z=") for o in overrides)


@pytest.mark.slow
def test_accuracy_against_size_keeps_a_pareto_front(tmp_path, data_dir):
    result = run_cli(
        "train.py", *TINY, f"paths.data_dir={data_dir}", "hydra.sweeper.n_trials=2", "model.hidden_size=choice(4,8)",
        "model.optimizer.lr=0.01",
        "optimized_metric=[val/acc_best,model/num_parameters]", "hydra.sweeper.direction=[maximize,minimize]",
        "hydra/sweeper/sampler=brute_force", root=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 objectives: pruning is off" in result.stdout and "Pareto front of" in result.stdout
    trials = trials_of(f"sqlite:///{tmp_path}/multirun/optuna.db", "mnist1d-lstm")
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in trials)
    stored = optuna.load_study(study_name="mnist1d-lstm", storage=f"sqlite:///{tmp_path}/multirun/optuna.db")
    assert stored.metric_names == ["val/acc_best", "model/num_parameters"]  # optuna-dashboard's axis names
    sizes = {t.params["model.hidden_size"]: t.values[1] for t in trials}
    assert sizes[4] < sizes[8]  # the parameter count, as the training app returned it
    trial_cfg = yaml.safe_load((Path(trials[0].user_attrs["run_dir"]) / "config.yaml").read_text())
    assert trial_cfg["callbacks"]["model_checkpoint"]["monitor"] == "val/acc_best"  # the first objective's
    sweep_dir = tmp_path / "multirun" / "mnist1d" / "mnist1d-lstm"
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["metrics"] == ["val/acc_best", "model/num_parameters"] and best["directions"] == [
        "maximize",
        "minimize",
    ]
    assert {entry["trial"] for entry in best["pareto_front"]} <= {t.number for t in trials}
    assert (sweep_dir / "pareto.png").stat().st_size > 0
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert len(results["solutions"]) == len(best["pareto_front"])


def test_what_counts_as_a_fixed_override_and_which_folder_a_study_owns(tmp_path):
    from hydra_plugins.rnnlab_sweeper import optuna_study

    started = optuna_study.fixed_settings(
        ["+trainer.limit_train_batches=3", "trainer.max_epochs=3", "threads=2", "~model/scheduler"]
    )
    now = optuna_study.fixed_settings(
        ["++trainer.limit_train_batches=3", "trainer.max_epochs=2", "hydra/launcher=joblib", "hydra.sweeper.n_trials=9"]
    )
    assert started == {"trainer.limit_train_batches": "3", "trainer.max_epochs": "3", "model/scheduler": "~"}
    assert optuna_study.differences(started, now) == [
        "model/scheduler=~ (now not given)",
        "trainer.max_epochs=3 (now 2)",
    ]

    wanted = tmp_path / "mnist1d-lstm"
    assert optuna_study.owned_sweep_dir(wanted, "s", "url", "a", set()) == wanted  # free: nothing there yet
    optuna_study.claim(wanted, "s", "url", "a")
    assert optuna_study.owned_sweep_dir(wanted, "s", "url", "a", set()) == wanted  # its own
    assert (
        optuna_study.owned_sweep_dir(wanted, "s", "url", "b", set()) == tmp_path / "mnist1d-lstm_2"
    )  # another study's
    legacy = tmp_path / "old"
    (legacy / "trial_0").mkdir(parents=True)  # a folder from before optuna_study.yaml: the study whose trials ran there
    assert optuna_study.owned_sweep_dir(legacy, "s", "url", "c", {str(legacy)}) == legacy
    assert optuna_study.owned_sweep_dir(legacy, "s", "url", "d", set()) == tmp_path / "old_2"
