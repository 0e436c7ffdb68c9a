"""Config schema of the ``rnnlab_optuna`` sweeper and its ``sampler`` / ``pruner`` groups.

Registered in Hydra's ConfigStore when Hydra scans the ``hydra_plugins`` namespace, so
``hydra/sweeper=rnnlab_optuna``, ``hydra/sweeper/pruner=hyperband`` and ``hydra/sweeper/sampler=random`` work
from any command line. Samplers and pruners are plain ``_target_`` nodes: any Optuna sampler or pruner
can be given the same way; the sampler group is ``samplers.SAMPLERS``.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from hydra_plugins.rnnlab_sweeper import samplers  # noqa: F401 (registers the hydra/sweeper/sampler group)

SWEEPER_NAME = "rnnlab_optuna"


@dataclass
class RnnlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.rnnlab_sweeper.optuna_sweeper.RnnlabOptunaSweeper"
    # sampler and pruner arrive as (resolved) configs: the pruner's is handed on to every trial job.
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "median"}])
    # Any Optuna RDB URL; a SQLite file's folder is created when missing. null: sqlite:///<root>/multirun/optuna.db,
    # <root> being paths.root_dir where the app has it, else the directory the command ran in.
    storage: str | None = None
    # null: <data>-<cell> for rnnlab (e.g. mnist1d-lstm), else the app's job name (its script's name).
    study_name: str | None = None
    # max | min | maximize | minimize, or a list of them for several objectives (optimized_metric a list);
    # null: optimized_mode where the app has it, else minimize.
    direction: Any = None
    # The study's total number of trials (any state, counting every process that works on it; trials lost to an
    # interruption or a kill do not count, they run again): a rerun or a second worker continues the study.
    n_trials: int = 20
    # Trials run at once; null: the launcher's (joblib's n_jobs; the basic launcher runs one at a time).
    n_jobs: int | None = None
    # Stop launching (and end with an error) once more than this fraction of this run's trials failed.
    max_failure_rate: float = 1.0
    # The sweeper records a heartbeat for each running trial; a trial of another machine whose heartbeat is older
    # than grace_period (its sweep was killed) is marked FAIL and run again by the next sweep on the study.
    heartbeat_interval: int = 10
    grace_period: int = 30
    # Rows of the table of best trials printed at the end.
    top_k: int = 5
    # GPU sweeps (trainer=gpu) with a launcher on this machine (basic, joblib): parallel trial i uses visible
    # GPU i mod <count>, at most trials_per_gpu trials per GPU run at once; no GPU: trials run on CPU.
    trials_per_gpu: int = 1
    sampler: Any = None
    pruner: Any = None
    # key: search space, e.g. model.hidden_size: tag(log, int(interval(8, 256)))
    params: dict[str, str] | None = None
    # Known settings to try before sampling, once per study: [{model.hidden_size: 64, model.optimizer.lr: 0.005}]
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    # A function (cfg, trial) -> None adding parameters with trial.suggest_*() (as in hydra-optuna-sweeper).
    custom_search_space: str | None = None
    # What the app's trials are told, as override templates filled in per trial (trial_overrides.py):
    # {number}, {storage}, {study_name}, {pruner}, {sweep_folder}, {core_share}, {first_metric}. rnnlab's are in
    # conf/hparams_search/optuna.yaml; a plain Hydra app needs none.
    trial_overrides: list[str] = field(default_factory=list)
    # key: templates added to every trial only where the app's config leaves that key null (not set by the user).
    if_null: dict[str, list[str]] = field(default_factory=dict)
    # Templates added to every trial where the launcher runs trials elsewhere (a cluster: SLURM), not on this
    # machine: a cluster may stop and requeue a trial's job, which the app may want to continue.
    if_cluster: list[str] = field(default_factory=list)


# Steps are validation epochs (the job reports the optimised metric once per validation epoch).
PRUNERS: dict[str, dict[str, Any]] = {
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 4, "n_warmup_steps": 2},
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "${trainer.max_epochs}",
        "reduction_factor": 3,
    },
    "none": {"_target_": "optuna.pruners.NopPruner"},
}

_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name=SWEEPER_NAME, node=RnnlabOptunaSweeperConf, provider="rnnlab")
for _name, _node in PRUNERS.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="rnnlab")
