"""The rnnlab_optuna sweeper end to end: real Hydra multirun, real Optuna RDB storage, real Lightning trials.

Trials are tiny (hidden 8, one epoch of 3 batches); every sweep writes under a tmp RNNLAB_ROOT.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from helpers import FIXTURES, ROOT, cli_env, compose_config, read_scalars, run_cli
from hydra_plugins.rnnlab_sweeper.optuna_sweeper import distribution_of
from inprocess import run_main
from rnnlab import budget
from rnnlab.devices import cpu_share

STUDY = "mnist1d-lstm"  # <data>-<cell> of the default config
TINY_SWEEP = [
    "hparams_search=optuna",
    # model.hidden_size among them: a fixed override wins over the search space, so only the lr is swept
    *budget.overrides(max_epochs=1, limit_val_batches=1),  # no threads=1: the sweeper shares the cores
]
# val/loss is NaN when lr=1e30 (inf is refused); hidden_size=0 is rejected by validation (the job raises).
ON_LOSS = ["optimized_metric=val/loss", "optimized_mode=min"]


def sweep_args(data_dir: Path, *args: str) -> list[str]:
    return ["-m", *TINY_SWEEP, f"paths.data_dir={data_dir}", *args]


def sweep(root: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("train.py", *sweep_args(data_dir, *args), root=root)


def start_sweep(root: Path, data_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RNNLAB_ROOT": str(root), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *sweep_args(data_dir, *args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sqlite_url(root: Path) -> str:
    return f"sqlite:///{root}/multirun/optuna.db"


def load(storage: str, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


def enqueue(*settings: dict) -> str:
    """``+hydra.sweeper.enqueue=[...]`` trying these settings first, in order."""
    entries = ",".join("{" + ",".join(f"{k}:{v}" for k, v in s.items()) + "}" for s in settings)
    return f"+hydra.sweeper.enqueue=[{entries}]"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# ------------------------------------------------------------------------------------------- search space


def parse(line: str):
    return distribution_of(OverridesParser.create().parse_override(line))


def test_search_space_syntax_maps_to_optuna_distributions():
    assert parse("model.hidden_size=tag(log, int(interval(8, 256)))") == IntDistribution(8, 256, log=True)
    assert parse("model.optimizer.lr=tag(log, interval(1e-4, 1e-1))") == FloatDistribution(1e-4, 0.1, log=True)
    assert parse("model.dropout=interval(0, 0.5)") == FloatDistribution(0.0, 0.5)
    assert parse("model.num_layers=range(1, 4)") == IntDistribution(1, 3)
    assert parse("model=choice(vanilla, gru, lstm)") == CategoricalDistribution(["vanilla", "gru", "lstm"])
    # Hydra's plugin scan re-executes the plugin module, so compare by base class (SearchSpaceError is a
    # ValueError), not by a class object imported before the scan.
    with pytest.raises(ValueError, match=r"tag \['linear'\] is not allowed; allowed: \['log'\]") as raised:
        parse("model.optimizer.lr=tag(linear, interval(1e-4, 1e-1))")
    assert type(raised.value).__name__ == "SearchSpaceError"
    with pytest.raises(ValueError, match="needs interval"):
        parse("model=tag(log, choice(gru, lstm))")


@pytest.mark.parametrize(
    "value",
    [
        "postgresql+psycopg2://user:p@ss@/optuna?host=/tmp/pg dir&port=5433",
        "gru",
        1e-05,
        float("inf"),
        64,
        True,
        None,
        {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 4, "n_warmup_steps": 2, "seed": None},
    ],
)
def test_values_handed_to_trial_jobs_survive_hydra_parsing(value):
    from rnnlab.sweep.results import override_value

    parsed = OverridesParser.create().parse_override(f"key={override_value(value)}").value()
    assert parsed == value


def test_thread_share_divides_the_cores_among_parallel_trials():
    cores = cpu_share(1)
    assert cpu_share(2) == max(1, cores // 2)
    assert cpu_share(10 * cores) == 1


def test_cores_are_shared_among_the_running_trials_of_this_host():
    from rnnlab.sweep.cores import running_on_host

    study = optuna.create_study()
    workers = ["here:1", "here:2", "there:1", None]
    for worker in workers:
        trial = study.ask()
        if worker:
            trial.set_user_attr("worker", worker)
    finished = study.ask()  # a finished trial does not count
    finished.set_user_attr("worker", "here:1")
    study.tell(finished, 1.0)
    assert running_on_host(study, "here") == 2 and running_on_host(study, "there") == 1
    assert running_on_host(study, "elsewhere") == 0


def test_bad_sweeper_options_are_named(tmp_path, data_dir):
    result = sweep(tmp_path, data_dir, "hydra/sweeper/pruner=bogus")
    assert result.returncode == 1
    assert "hydra/sweeper/pruner='bogus' is not allowed; allowed: hyperband, median, none" in result.stderr
    result = sweep(tmp_path, data_dir, "hydra.sweeper.n_trials=0")
    assert result.returncode != 0
    assert "hydra.sweeper.n_trials=0 is not allowed; must be >= 1" in result.stderr
    assert not (tmp_path / "multirun" / "optuna.db").exists()


# ------------------------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_sweep_writes_storage_best_yaml_and_a_rerun_continues_the_study(tmp_path, data_dir):
    result = sweep(tmp_path, data_dir, "hydra.sweeper.n_trials=4")
    assert_ok(result)
    study = load(sqlite_url(tmp_path))
    assert states(study) == ["COMPLETE"] * 4
    sweep_dir = tmp_path / "multirun" / "mnist1d" / STUDY
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["trial"] == study.best_trial.number and best["value"] == pytest.approx(study.best_value)
    assert best["params"] == study.best_trial.params and best["direction"] == "maximize"
    assert "4 COMPLETE; top 4 by maximize" in result.stdout
    for trial in study.trials:  # one directory per trial with its .hydra config; events in the logs tree
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir == sweep_dir / f"trial_{trial.number}" and (run_dir / ".hydra" / "overrides.yaml").is_file()
        assert list((tmp_path / "logs" / "mnist1d" / "sweeps" / STUDY / f"trial_{trial.number}").glob("events.*"))
    trial_cfg = yaml.safe_load((Path(best["run_dir"]) / "config.yaml").read_text())
    assert trial_cfg["threads"] == cpu_share(1) and trial_cfg["optuna_trial"]["number"] == best["trial"]
    # best.yaml's overrides compose as a plain training run with the best lr
    cfg = compose_config("train", best["overrides"], tmp_path / "rerun", data_dir)
    assert cfg.model.optimizer.lr == pytest.approx(best["params"]["model.optimizer.lr"])
    assert not any(o.startswith(("++optuna_trial", "hydra.", "threads")) for o in best["overrides"])
    assert "hparams_search=optuna" in best["trial_command"] and "hparams_search" not in best["command"]

    first = {t.number: t.value for t in study.trials}
    assert_ok(sweep(tmp_path, data_dir, "hydra.sweeper.n_trials=5"))  # n_trials counts the whole study
    study = load(sqlite_url(tmp_path))
    assert [t.number for t in study.trials] == list(range(5)) and states(study) == ["COMPLETE"] * 5
    assert {n: t.value for n, t in enumerate(study.trials) if n < 4} == first


@pytest.mark.slow
def test_a_raising_and_a_nan_trial_fail_and_the_sweep_goes_on(tmp_path, data_dir):
    result = sweep(
        tmp_path,
        data_dir,
        *ON_LOSS,
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=3",
        "model.hidden_size=choice(0, 8)",
        "model.optimizer.lr=choice(1e30, 0.01)",
        enqueue(
            {"model.hidden_size": 0, "model.optimizer.lr": 0.01},
            {"model.hidden_size": 8, "model.optimizer.lr": 1e30},
            {"model.hidden_size": 8, "model.optimizer.lr": 0.01},
        ),
    )
    assert_ok(result)
    study = load(sqlite_url(tmp_path))
    assert states(study) == ["FAIL", "FAIL", "COMPLETE"]
    assert study.trials[0].user_attrs["error"] == "ConfigError: model.hidden_size=0 is not allowed; must be > 0"
    assert study.trials[1].user_attrs["error"] == "the job returned nan for the optimised metric"
    best = yaml.safe_load((tmp_path / "multirun" / "mnist1d" / STUDY / "best.yaml").read_text())
    assert best["trial"] == 2


def test_a_sweep_whose_trials_all_fail_ends_with_the_first_error(tmp_path, data_dir):
    # max_failure_rate=0: no trial after the first failure
    result = sweep(
        tmp_path,
        data_dir,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0",
        "model.hidden_size=choice(0, 8)",
        enqueue({"model.hidden_size": 0}),
    )
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: all 1 trials of this sweep failed; first error (trial 0): "
            "ConfigError: model.hidden_size=0 is not allowed"
        )
    )
    assert "Traceback" not in result.stderr
    assert states(load(sqlite_url(tmp_path))) == ["FAIL"]  # recorded, not left RUNNING


@pytest.mark.slow
def test_the_pruner_stops_a_bad_trial_and_a_nan_one(tmp_path, data_dir):
    # Median pruner judging from the first trial: a near-zero lr learns nothing in the first epoch.
    result = sweep(
        tmp_path,
        data_dir,
        *ON_LOSS,
        "~model/scheduler",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "model.optimizer.lr=choice(0.05, 1e-9, 1e30)",
        enqueue({"model.optimizer.lr": 0.05}, {"model.optimizer.lr": 1e-9}, {"model.optimizer.lr": 1e30}),
    )
    assert_ok(result)
    study = load(sqlite_url(tmp_path))
    assert states(study) == ["COMPLETE", "PRUNED", "PRUNED"]
    assert study.trials[1].intermediate_values[0] > study.trials[0].intermediate_values[0]


@pytest.mark.slow
def test_parallel_slots_take_the_next_trial_as_soon_as_theirs_ends(tmp_path, data_dir):
    # Two joblib workers, one long trial and three one-epoch ones: the short trials run one after another in the
    # other slot while the long one still trains. (Batch-synchronous launching would start trials 2 and 3 only
    # after trial 0, the slowest of the first batch, had ended.) The long one stops 3 epochs after the short ones
    # have completed (tests/fixtures/pausing.py), 1000 epochs at most (about 30 on a quiet machine).
    env = {**cli_env(tmp_path), "PYTHONPATH": str(FIXTURES)}  # joblib's workers import the callback too
    stop = ["+callbacks.stop._target_=pausing.StopOnceOthersEnd", "+callbacks.stop.run_dir=${paths.output_dir}"]
    result = run_main(
        [
            str(ROOT / "src" / "train.py"),
            *sweep_args(
                data_dir,
                *stop,
                "+callbacks.stop.others=3",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                "hydra/sweeper/pruner=none",
                "hydra.sweeper.n_trials=4",
                "trainer.max_epochs=choice(1, 1000)",
                enqueue(
                    *(
                        {"trainer.max_epochs": epochs, "model.optimizer.lr": lr}  # distinct: enqueue skips duplicates
                        for epochs, lr in [(1000, 0.01), (1, 0.01), (1, 0.02), (1, 0.03)]
                    )
                ),
            ),
        ],
        env=env,
        cwd=str(ROOT),
    )
    assert_ok(result)
    trials = load(sqlite_url(tmp_path)).trials
    assert states(load(sqlite_url(tmp_path))) == ["COMPLETE"] * 4
    assert [t.params["trainer.max_epochs"] for t in trials] == [1000, 1, 1, 1]
    # Each short trial was asked for (so launched) while the long one trained; batch-synchronous launching would
    # ask for trials 2 and 3 only once trial 0 had ended. (Completion times are not compared: the sweep records a
    # trial complete when its worker hands back the result, which may come after the long trial's last epochs.)
    long_trial_end = trials[0].datetime_complete
    assert all(t.datetime_start < long_trial_end for t in trials[1:]), [
        (t.datetime_start, t.datetime_complete) for t in trials
    ]
    assert all(t.user_attrs["worker"] == trials[0].user_attrs["worker"] for t in trials)  # one sweep process
    trial_cfg = yaml.safe_load((Path(trials[3].user_attrs["run_dir"]) / "config.yaml").read_text())
    assert trial_cfg["threads"] == cpu_share(2) and trial_cfg["optuna_trial"]["share_cores"] is True
    # The long trial shared the cores while the short ones ran, then took them all (ShareCores).
    threads = [
        v for _, v in read_scalars(tmp_path / "logs" / "mnist1d" / "sweeps" / STUDY / "trial_0")["trial/threads"]
    ]
    # (its first epoch may come before the other slot's first trial is under way on a loaded machine)
    assert cpu_share(2) in threads and threads[-1] == cpu_share(1), threads


TWO_WORKERS = ["hydra.sweeper.n_trials=2", "threads=1"]  # one core each


def assert_two_workers_share(storage: str, processes: list[subprocess.Popen], n_trials: int) -> None:
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    trials = load(storage).trials
    numbers = [t.number for t in trials]
    # Every process asks only while the study holds fewer than n_trials: at most one extra per extra worker.
    assert numbers == list(range(len(trials))) and n_trials <= len(trials) <= n_trials + 1
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials}
    assert workers <= {str(p.pid) for p in processes}
    assert len({t.user_attrs["run_dir"] for t in trials}) == len(trials)


@pytest.mark.slow
def test_two_concurrent_sweeps_on_one_sqlite_file_share_the_study(tmp_path, data_dir):
    processes = [start_sweep(tmp_path, data_dir, *TWO_WORKERS) for _ in range(2)]
    assert_two_workers_share(sqlite_url(tmp_path), processes, 2)


# ------------------------------------------------------------------------------------------- PostgreSQL


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a unix socket in a tmp dir; its URL."""
    pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install -e '.[postgres]'")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install -y postgresql)")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(home, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = home / "data"
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(home / "server.log"),
                "-w",
                "-o",
                f"-k {home} -p {port} -c listen_addresses=''",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@/postgres?host={home}&port={port}"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_study_on_postgresql(tmp_path, data_dir, postgres_url):
    storage = f"hydra.sweeper.storage='{postgres_url}'"
    processes = [start_sweep(tmp_path, data_dir, storage, *TWO_WORKERS) for _ in range(2)]
    assert_two_workers_share(postgres_url, processes, 2)


def _open_once(url: str, barrier, results) -> None:
    from rnnlab.sweep import storage

    storage.STORAGE_INIT_ATTEMPTS = 1  # a lost race would raise, not be retried
    barrier.wait()
    try:
        storage.open_storage(url)
        results.put("opened")
    except Exception as error:  # the test prints what went wrong
        results.put(f"{type(error).__name__}: {str(error).splitlines()[0]}")


def test_processes_opening_a_new_postgresql_study_at_once_do_not_race_to_create_its_tables(postgres_url):
    # Without the schema lock, 6 processes creating Optuna's tables at once fail with UniqueViolation (and,
    # after a retry, "type alembic_version already exists") on nearly every try (10 of 10 here).
    import multiprocessing

    import sqlalchemy

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_open_once, args=(postgres_url, barrier, results)) for _ in range(6)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["opened"] * 6
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        tables = set(sqlalchemy.inspect(connection).get_table_names())
    engine.dispose()
    assert {"studies", "trials", "alembic_version"} <= tables


# ------------------------------------------------------------------------------------------- dashboard


def test_make_dashboard_serves_the_study_over_http(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    for value in (0.5, 0.7):
        trial = study.ask({"model.hidden_size": IntDistribution(8, 256, log=True)})
        study.tell(trial, value)
    study.tell(study.ask(), state=TrialState.PRUNED)
    port = free_port()
    # -o install: the venv is already set up (make test did it); do not reinstall from inside a test.
    server = subprocess.Popen(
        ["make", "-s", "-o", "install", "dashboard", f"STORAGE={storage}", f"PORT={port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        studies, deadline = None, time.monotonic() + 60
        while studies is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies is not None, server.stderr.read().decode() if server.poll() is not None else "no answer"
        (entry,) = [s for s in studies if s["study_name"] == "tiny"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}", timeout=5) as response:
            detail = json.load(response)
        assert [(t["number"], t["state"]) for t in detail["trials"]] == [
            (0, "Complete"),
            (1, "Complete"),
            (2, "Pruned"),
        ]
        assert detail["best_trials"][0]["number"] == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
