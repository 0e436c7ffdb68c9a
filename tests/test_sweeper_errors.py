"""Every sweep-level mistake is one ``error:`` line before any trial runs, with the study and its files left as
they were (issue 17's rows: bad storages, search-space syntax, misspelt keys, directions, samplers).

Each row runs once as a user would (a sphere sweep, or rnnlab's train.py); its variants are checked in-process.
"""

from __future__ import annotations

import shutil
import time

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from fixtures.sweep_runs import SPHERE, TEMPLATE_CONFIGS, assert_one_error_line, run_app, snapshot
from helpers import run_cli
from hydra_plugins.rnnlab_sweeper import search_space
from rnnlab.sweep.storage import StorageError, open_storage


@pytest.fixture(scope="module")
def sphere_study(tmp_path_factory):
    """A finished one-trial sphere study (storage multirun/optuna.db, sweep dir sweep/), made once."""
    root = tmp_path_factory.mktemp("sphere")
    result = run_app(SPHERE, "-m", f"hydra.sweep.dir={root}/sweep", "hydra.sweeper.n_trials=1", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture
def finished_sphere(sphere_study, tmp_path):
    """A copy of the finished sphere study, with its files' times, for one test to leave alone."""
    shutil.copytree(sphere_study, tmp_path / "s")
    (tmp_path / "s" / "afile").write_text("a file, not a folder")
    (tmp_path / "s" / "notes.txt").write_text("not a database\n" * 100)
    return tmp_path / "s"


def sphere_sweep(root, *args: str):
    return run_app(SPHERE, "-m", f"hydra.sweep.dir={root}/sweep", *args, cwd=root)


@pytest.mark.parametrize(
    "storage, fragment",
    [
        ("foo://x", "Can't load plugin: sqlalchemy.dialects:foo"),
        ("sqlite:///{tmp}/afile/optuna.db", "afile is not a directory"),
        ("sqlite:///{tmp}/notes.txt", "file is not a database"),
    ],
)
def test_a_bad_or_unwritable_storage_is_one_line_and_writes_nothing(finished_sphere, storage, fragment):
    before = snapshot(finished_sphere)
    started = time.monotonic()
    url = storage.format(tmp=finished_sphere)
    result = sphere_sweep(finished_sphere, f"hydra.sweeper.storage='{url}'", "hydra.sweeper.n_trials=2")
    assert_one_error_line(result, "hydra.sweeper.storage=", "cannot be used", fragment, "allowed:")
    assert time.monotonic() - started < 30  # no ~9 s of retries
    assert snapshot(finished_sphere) == before  # multirun.yaml, study.yaml, optuna.db untouched


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("not a url", "Could not parse SQLAlchemy URL"),
        ("sqlite:///{tmp}", "is a directory"),
        ("sqlite:////proc/rnnlab/optuna.db", "cannot be created"),
        ("postgresql+nodriver://u@h/db", "Can't load plugin"),
    ],
)
def test_storage_urls_that_cannot_work_are_refused_at_once(tmp_path, url, fragment):
    with pytest.raises(StorageError, match="cannot be used") as refused:
        open_storage(url.format(tmp=tmp_path))
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("x=interval(0.1,0.001)", "interval(0.1, 0.001) is inverted; needs a < b"),
        ("x=tag(log,interval(0,0.1))", "a log scale needs a > 0, not 0"),
        ("hydra.sweeper.params={x:'choice('}", "'x=choice(' is not allowed: no viable alternative"),
        ("hydra/sweeper/sampler=cmaes", "hydra.sweeper.sampler 'optuna.samplers.CmaEsSampler' cannot be built"),
        ("hydra.sweeper.trial_overrides=['z={nmber}']", "trial_overrides[0]='z={nmber}' is not allowed; allowed: pl"),
    ],
)
def test_search_space_and_sampler_mistakes_are_one_line_before_any_trial(finished_sphere, override, fragment):
    before = snapshot(finished_sphere)
    result = sphere_sweep(finished_sphere, override, "hydra.sweeper.n_trials=3")
    assert_one_error_line(result, fragment)
    assert snapshot(finished_sphere) == before


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("x=interval(1,1)", "is empty; needs a < b"),
        ("x=tag(log,choice(1,2))", "tag(log, ...) needs interval(a, b)"),
        ("x=tag(log,int(interval(-2,8)))", "a log scale needs a > 0, not -2"),
        ("x=range(5,1)", "the range is empty"),
        ("x=range(1,5,0)", "needs step != 0"),
        ("x=interval(0,inf)", "needs finite a and b"),
        ("x=interval(0,1e400)", "needs finite a and b"),
        ("x=tag(linear,interval(0,1))", "tag ['linear'] is not allowed; allowed: ['log']"),
        ("x=choice(", "'x=choice(' is not allowed: no viable alternative at input 'choice('"),
    ],
)
def test_search_space_variants_are_refused_in_one_line(line, fragment):
    with pytest.raises(search_space.SearchSpaceError) as refused:
        search_space.split_search_space(OverridesParser.create(), {}, [line])
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_a_grid_over_an_interval_and_a_missing_custom_space_are_refused():
    from hydra_plugins.rnnlab_sweeper.samplers import build_sampler

    distributions, _ = search_space.split_search_space(OverridesParser.create(), {}, ["x=interval(0,1)"])
    with pytest.raises(ValueError, match="grid cannot search x: a grid needs choice"):
        build_sampler({"_target_": "optuna.samplers.GridSampler"}, distributions)
    with pytest.raises(search_space.SearchSpaceError, match="custom_search_space='nowhere.configure'"):
        search_space.custom_search_space("nowhere.configure")


@pytest.mark.parametrize(
    "templates, if_null, fragment",
    [
        (["x={nmber}"], {}, "trial_overrides[0]='x={nmber}' is not allowed; allowed: placeholders: {number}, {st"),
        (["x=1", "x=choice(1,{number})"], {}, "trial_overrides[1]='x=choice(1,{number})' is not allowed; allowed: one"),
        (["x=("], {}, "trial_overrides[0]='x=(' is not allowed; allowed: a Hydra override (Error parsing"),
        ([], {"threads": ["threads=", 3]}, "if_null.threads[1]=3 is not allowed; allowed: an override template"),
        ([], {"threads": "threads=1"}, "if_null={'threads': 'threads=1'} is not allowed; allowed: a mapping of keys"),
        ("x=1", {}, "hydra.sweeper.trial_overrides='x=1' is not allowed; allowed: a list of override templates"),
    ],
)
def test_trial_override_templates_are_checked_in_one_line(templates, if_null, fragment):
    from hydra_plugins.rnnlab_sweeper.trial_overrides import TrialOverrides

    with pytest.raises(ValueError) as refused:
        TrialOverrides(templates, if_null).check()
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_if_cluster_templates_are_checked_and_told_only_to_trials_on_a_cluster():
    from omegaconf import OmegaConf

    from hydra_plugins.rnnlab_sweeper.trial_overrides import TrialOverrides

    with pytest.raises(ValueError, match=r"if_cluster='x=1' is not allowed; allowed: a list of override templates"):
        TrialOverrides([], {}, "x=1").check()
    with pytest.raises(ValueError, match=r"if_cluster\[0\]='x=\(' is not allowed; allowed: a Hydra override"):
        TrialOverrides([], {}, ["x=("]).check()
    overrides = TrialOverrides([], {}, ["callbacks.last_checkpoint.every_n_epochs=1", "nokey.here=1"])
    overrides.check()
    config = OmegaConf.create({"callbacks": {"last_checkpoint": {"every_n_epochs": 0}}})
    assert overrides.per_sweep(config, {}, on_cluster=False) == []
    # a plain key=value whose key the app's config lacks is left out, as for trial_overrides
    assert overrides.per_sweep(config, {}, on_cluster=True) == ["callbacks.last_checkpoint.every_n_epochs=1"]


def test_a_misspelt_swept_key_stops_before_any_trial(tmp_path):
    result = run_cli("train.py", "-m", "hparams_search=optuna", "model.hiden=choice(1,2)", root=tmp_path)
    assert_one_error_line(result, "swept key 'model.hiden' is not in the config", "+key=... to add one")
    assert not (tmp_path / "multirun").exists()  # no storage, no study, no sweep dir


def test_an_unparsable_command_line_sweep_is_one_line(tmp_path):
    result = run_cli("train.py", "-m", "hparams_search=optuna", "model.hidden_size=choice(", root=tmp_path)
    assert_one_error_line(result, "model.hidden_size=choice( cannot be parsed")
    assert not (tmp_path / "multirun").exists()


def test_the_templates_file_on_rnnlab_names_the_keys_rnnlab_lacks(tmp_path):
    # lightning-hydra-template's hparams_search file sweeps its own keys (datamodule.*, model.net.*): one line.
    result = run_cli(
        "train.py", f"hydra.searchpath=[file://{TEMPLATE_CONFIGS}]", "hparams_search=mnist_optuna", root=tmp_path
    )
    assert_one_error_line(result, "swept key 'datamodule.batch_size', 'model.net.lin1_size'")
    assert not (tmp_path / "multirun").exists()


def test_several_directions_need_as_many_metrics(tmp_path):
    args = ["-m", "hparams_search=optuna", "hydra.sweeper.direction=[maximize,minimize]"]
    result = run_cli("train.py", *args, root=tmp_path)
    assert_one_error_line(result, "optimized_metric=['val/acc_best'] and hydra.sweeper.direction name 1 and 2")
    assert not (tmp_path / "multirun").exists()


def opening_fails_first_with(monkeypatch, message: str) -> list[str]:
    """Optuna's RDBStorage raising ``ProgrammingError(message)`` at its first call, then opening; the calls."""
    import optuna
    from sqlalchemy.exc import ProgrammingError

    from rnnlab.sweep import storage

    real, calls = optuna.storages.RDBStorage, []

    def opening(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise ProgrammingError("CREATE TABLE alembic_version ...", {}, Exception(message))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", opening)
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    return calls


def test_a_storage_whose_tables_another_process_is_creating_opens_on_the_next_try(tmp_path, monkeypatch):
    # PostgreSQL's loser of a CREATE TABLE race (another tool, without rnnlab's schema lock)
    calls = opening_fails_first_with(monkeypatch, 'type "alembic_version" already exists')
    assert open_storage(f"sqlite:///{tmp_path}/optuna.db") is not None and len(calls) == 2


def test_a_database_error_that_is_no_race_is_refused_at_once(tmp_path, monkeypatch):
    calls = opening_fails_first_with(monkeypatch, "permission denied for schema public")
    with pytest.raises(StorageError, match="cannot be used: permission denied for schema public; allowed:"):
        open_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert len(calls) == 1  # not retried
