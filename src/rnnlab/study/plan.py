"""What a study will run, checked before anything runs: the ``study`` block, the overrides it passes on.

Light (no torch at import): the Hydra callback validates with it before the study directory is written.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab import budget
from rnnlab.errors import ConfigError, check_number, check_one_of, not_allowed
from rnnlab.sweep.results import override_value

MATCHES = ("none", "params")
LAUNCHERS = ("local", "slurm")  # study.launcher: where the trials and confirm runs run
SETTINGS_FILE = "settings.json"  # what the study was tuned with; a rerun must give the same
NAME_PATTERN = r"[A-Za-z0-9][\w.-]*"
# Upper bounds that catch a typo (an extra digit) before it books days of compute.
LIMITS = {"trials": 100_000, "trial_epochs": 100_000, "epochs": 100_000, "seeds": 1000, "jobs": 256}
# Overrides the study sets itself, per cell and phase: giving them is a mistake, named with the study key to use.
OWNED = {
    "model": "study.cells",
    "seed": "study.seeds (confirm runs use seeds 0 .. study.seeds-1)",
    "trainer.max_epochs": "study.trial_epochs and study.epochs",
    "hparams_search": "the study (hparams_search=optuna for every sweep)",
    "experiment": "study.params and plain overrides (an experiment would fix the cell)",
    "test": "the study (trials validate, confirm runs test)",
    "ckpt_path": "the study (confirm runs start from scratch)",
    "hydra.sweeper.n_trials": "study.trials",
    "hydra.sweeper.study_name": "study.name",
    "hydra.sweeper.storage": "the study (its optuna.db)",
    "hydra.sweeper.params": "study.params",
    "hydra.sweep.dir": "the study (tune/<cell> in the study directory)",
    "hydra.sweep.subdir": "the study",
}
# Hydra overrides that configure the sweeps (pruner, sampler, launcher, heartbeats) and are handed on to them.
SWEEP_HYDRA_PREFIXES = ("hydra.sweeper.", "hydra/sweeper", "hydra.launcher.", "hydra/launcher")


def override_key(override: str) -> str:
    """``++a.b=1`` -> ``a.b``; ``hydra/launcher=joblib`` -> ``hydra/launcher``; ``~a`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


@dataclass
class Plan:
    """One study: its directory, cells, budgets, and the overrides every sweep and confirm run gets."""

    dir: Path
    name: str
    task: str
    cells: list[str]
    trials: int
    trial_epochs: int
    epochs: int
    seeds: int
    jobs: int
    match: str
    max_params: int | None
    launcher: str  # local | slurm (study.launcher): the sweeps' trials and the confirm runs as SLURM jobs
    srun_options: list[str]  # study.srun: the user's options for each confirm run's srun (partition, GPUs, ...)
    metric: str  # the optimised (validation) metric, as the data config sets it
    mode: str  # max | min
    space: dict[str, str]  # study.params: key -> search space (or a fixed value), as an override's value
    default_space: dict[str, str]  # hparams_search/optuna.yaml's space
    passthrough: list[str]  # the user's task overrides, for every sweep and confirm run
    sweep_hydra: list[str]  # the user's hydra.sweeper / hydra.launcher overrides, for the sweeps
    threads_given: bool
    hidden_caps: dict[str, int] = field(default_factory=dict)  # study.match=params: each cell's largest hidden size

    # ------------------------------------------------------------------------------------ paths

    def study_name(self, cell: str) -> str:
        return f"{self.name}-{cell}"

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.dir / 'optuna.db'}"

    def tune_dir(self, cell: str) -> Path:
        # Named as the Optuna study: the sweeper files the trials' TensorBoard events under the sweep folder's
        # name (logs/<task>/sweeps/<name>-<cell>/), so two studies' cells never share a folder there.
        return self.dir / "tune" / self.study_name(cell)

    def log_path(self, label: str) -> Path:
        return self.dir / "logs" / f"{label}.log"

    def confirm_dir(self, cell: str, params: dict[str, Any]) -> Path:
        """``confirm/<cell>-<digest>``: the digest of everything the runs depend on, so a changed best (more
        trials) or budget trains anew beside the old runs, and an unchanged one finds its finished runs."""
        key = json.dumps([cell, self.epochs, sorted(self.confirm_overrides(cell, params))], default=str)
        return self.dir / "confirm" / f"{cell}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"

    # ------------------------------------------------------------------------------------ commands

    def search_space(self, cell: str) -> dict[str, str]:
        """The space this cell is searched over: the default one, ``study.params`` on top, the hidden size
        capped under ``study.match=params``."""
        space = {**self.default_space, **self.space}
        if cell in self.hidden_caps:
            space["model.hidden_size"] = cap_space(space["model.hidden_size"], self.hidden_caps[cell])
        return space

    def sweep_command(self, cell: str, train_py: Path) -> list[str]:
        own_launcher = any(override_key(o) == "hydra/launcher" for o in self.sweep_hydra)  # e.g. slurm_gpu: theirs
        if self.launcher == "slurm":  # the user's hydra.launcher.* (partition, mem_gb, ...) come after these
            # sacct's JobName of each trial; study.jobs trials at once; a launcher of the user's keeps its CPUs
            jobs = [f"hydra.launcher.name={self.study_name(cell)}", f"hydra.launcher.array_parallelism={self.jobs}"]
            if not own_launcher:
                jobs = ["hydra/launcher=submitit_slurm", *jobs, f"hydra.launcher.cpus_per_task={self.threads}"]
        elif self.jobs > 1 and not own_launcher:
            jobs = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={self.jobs}"]
        else:
            jobs = []
        return [
            sys.executable,
            str(train_py),
            "-m",
            "hparams_search=optuna",
            f"model={cell}",
            *self.passthrough_for(cell),
            *(f"{key}={value}" for key, value in self.search_space(cell).items()),
            f"trainer.max_epochs={self.trial_epochs}",
            f"hydra.sweeper.study_name={self.study_name(cell)}",
            f"hydra.sweeper.n_trials={self.trials}",
            f"hydra.sweeper.storage={override_value(self.storage)}",
            f"hydra.sweep.dir={override_value(str(self.tune_dir(cell)))}",
            *jobs,
            *self.sweep_hydra,
        ]

    def confirm_overrides(self, cell: str, params: dict[str, Any]) -> list[str]:
        """A confirm run's overrides, seed and threads aside: the cell, the user's, the fixed entries of
        ``study.params``, the tuned values, the full budget."""
        fixed = [f"{key}={value}" for key, value in self.space.items() if not is_search_space(f"{key}={value}")]
        tuned = [f"{key}={override_value(value)}" for key, value in sorted(params.items())]
        return [f"model={cell}", *self.passthrough_for(cell), *fixed, *tuned, f"trainer.max_epochs={self.epochs}"]

    def passthrough_for(self, cell: str) -> list[str]:
        """The user's overrides, without those of keys the study searches (the search space decides them)."""
        searched = set(self.search_space(cell))
        return [o for o in self.passthrough if override_key(o) not in searched]

    @property
    def threads(self) -> int:
        """Each trial's and confirm run's share of this machine's cores (``study.jobs`` at once)."""
        from rnnlab.devices import cpu_share

        return cpu_share(self.jobs)

    def confirm_command(self, cell: str, params: dict[str, Any], seed: int, train_py: Path) -> list[str]:
        threads = [] if self.threads_given else [f"threads={self.threads}"]
        run_dir = self.confirm_dir(cell, params) / f"seed{seed}"
        return [
            *self.srun(f"{self.name}-{cell}-seed{seed}"),
            sys.executable,
            str(train_py),
            *self.confirm_overrides(cell, params),
            f"seed={seed}",
            *threads,
            # the record's parent: rnnlab runs lists the study's runs (--where parent.kind=study)
            f"+parent={override_value({'kind': 'study', 'dir': str(self.dir), 'study': self.name})}",
            f"hydra.run.dir={override_value(str(run_dir))}",
        ]

    def srun(self, job_name: str) -> list[str]:
        """``study.launcher=slurm``: the prefix that makes a command one SLURM job (its output streamed back as a
        local child's; the study's stop, one SIGINT, makes srun end the job at once); nothing locally."""
        if self.launcher != "slurm":
            return []
        return [
            "srun", f"--job-name={job_name}", "--ntasks=1", f"--cpus-per-task={self.threads}",
            "--quit-on-interrupt", "--unbuffered", *self.srun_options,
        ]  # fmt: skip

    # ------------------------------------------------------------------------------------ settings

    def settings(self) -> dict[str, Any]:
        """What the tuning depends on: a rerun with other settings would mix two searches in one study."""
        return {
            "overrides": sorted(self.passthrough),
            "study.params": dict(sorted(self.space.items())),
            "study.trial_epochs": self.trial_epochs,
            "study.match": self.match,
            "study.max_params": self.max_params,
        }

    def check_settings(self) -> None:
        """A ConfigError if the study directory was tuned with other settings than this command's."""
        path = self.dir / SETTINGS_FILE
        if not path.is_file():
            return
        try:
            before = json.loads(path.read_text())
        except ValueError:
            return  # an unreadable file is rewritten
        now = self.settings()
        changed = [key for key in now if before.get(key) != now[key]]
        if changed:
            key = changed[0]
            raise ConfigError(
                f"{self.dir} was tuned with {key}={before.get(key)!r}, this command gives {now[key]!r}; "
                f"allowed: the same settings (to continue it) or another study.name"
            )

    def save_settings(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / SETTINGS_FILE).write_text(json.dumps(self.settings(), indent=1) + "\n")


# ---------------------------------------------------------------------------------------- building a plan


def make_plan(cfg: DictConfig, hydra: DictConfig) -> Plan:
    """Check the ``study`` block and the command line (``hydra``: the HydraConfig); the plan, or a one-line
    ``ConfigError``."""
    task_overrides, hydra_overrides = list(hydra.overrides.task), list(hydra.overrides.hydra)
    study_dir = str(hydra.run.dir)
    study = cfg.get("study")
    if not isinstance(study, DictConfig):
        raise ConfigError("the config has no study block; run src/study.py (conf/study.yaml)")
    name, cells, match, max_params = _check_study_block(study)
    launcher = _check_launcher(study.get("launcher", "local"), hydra_overrides, hydra)
    srun_options = _check_srun_options(study.get("srun"))
    for override in [*task_overrides, *hydra_overrides]:
        key = override_key(override)
        if key in OWNED:
            raise ConfigError(f"{override} is not allowed here; the study sets {key} (use {OWNED[key]})")
    default_space = {str(k): str(v) for k, v in hydra.sweeper.params.items()}
    space = _check_space(cfg, study.get("params"))
    _check_match_space(match, {**default_space, **space}, space)
    return Plan(
        dir=Path(study_dir),
        name=name,
        task=str(cfg.task_name) if _resolvable(cfg, "task_name") else Path(study_dir).parent.name,
        cells=budget.shortened("study.cells", cells),
        trials=budget.capped("study.trials", int(study.trials)),
        trial_epochs=budget.capped("study.trial_epochs", int(study.trial_epochs)),
        epochs=budget.capped("study.epochs", int(study.epochs)),
        seeds=budget.capped("study.seeds", int(study.seeds)),
        jobs=int(study.jobs),
        match=str(match),
        max_params=max_params,
        launcher=launcher,
        srun_options=srun_options,
        metric=str(cfg.optimized_metric),
        mode=str(cfg.optimized_mode),
        space=space,
        default_space=default_space,
        passthrough=[o for o in task_overrides if not override_key(o).startswith("study.")],
        sweep_hydra=[o for o in hydra_overrides if override_key(o).startswith(SWEEP_HYDRA_PREFIXES)],
        threads_given=any(override_key(o) == "threads" for o in task_overrides),
    )


def _check_study_block(study: DictConfig) -> tuple[str, list[str], Any, Any]:
    """(name, cells, match, max_params) of the ``study`` block, each checked, and its counts in their limits."""
    from rnnlab.cells import CELLS

    name = study.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(f"study.name={name!r} is not allowed; must match {NAME_PATTERN} (letters, digits, _ . -)")
    cells = study.get("cells")
    if not OmegaConf.is_list(cells) or len(cells) == 0:
        raise ConfigError(f"study.cells={_plain(cells)!r} is not allowed; give a list of cells: {', '.join(CELLS)}")
    cells = list(cells)
    for cell in cells:
        check_one_of("study.cells", cell, CELLS)
    if len(set(cells)) != len(cells):
        raise ConfigError(f"study.cells={cells!r} is not allowed; each cell once")
    for key, high in LIMITS.items():
        check_number(f"study.{key}", study.get(key), integer=True, low=1, low_inclusive=True, high=high + 1)
    match = study.get("match")
    if match not in MATCHES:
        raise ConfigError(not_allowed("study.match", match, MATCHES, sort=False))
    max_params = study.get("max_params")
    if max_params is not None:
        check_number("study.max_params", max_params, integer=True, low=1, low_inclusive=True)
    return name, cells, match, max_params


def _check_launcher(launcher: Any, hydra_overrides: list[str], hydra: DictConfig) -> str:
    """``study.launcher``, one of LAUNCHERS; ``slurm`` needs SLURM's ``srun`` here (the confirm runs' jobs) and
    a SLURM launcher for the trials where the user names one."""
    import shutil

    if launcher not in LAUNCHERS:
        raise ConfigError(not_allowed("study.launcher", launcher, LAUNCHERS, sort=False))
    given = [o for o in hydra_overrides if override_key(o) == "hydra/launcher"]
    if launcher == "slurm" and given and not str(hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
        raise ConfigError(
            f"{given[-1]} is not allowed with study.launcher=slurm; allowed: a SLURM launcher "
            "(hydra/launcher=submitit_slurm, slurm_gpu) or study.launcher=local"
        )
    if launcher == "slurm" and shutil.which("srun") is None:
        raise ConfigError("study.launcher=slurm needs SLURM's srun on PATH; allowed: study.launcher=local here")
    return str(launcher)


def _check_srun_options(options: Any) -> list[str]:
    """``study.srun``: a list of srun options (each ``-x`` or ``--name[=value]``), or null."""
    if options is None:
        return []
    options = _plain(options)
    if not isinstance(options, list) or not all(isinstance(o, str) and o.startswith("-") for o in options):
        raise ConfigError(
            f"study.srun={options!r} is not allowed; give a list of srun options, "
            f"e.g. \"study.srun=['--partition=cpu','--mem=8G']\""
        )
    return options


def _check_match_space(match: Any, searched: dict[str, str], space: dict[str, str]) -> None:
    """``study.match=params`` needs model.hidden_size searched (``searched``: the default space with
    ``study.params`` over it)."""
    if match == "params" and "model.hidden_size" not in searched:
        raise ConfigError("study.match=params needs model.hidden_size in the search space (study.params)")
    if match == "params" and not is_search_space(f"model.hidden_size={space.get('model.hidden_size', '')}"):
        if "model.hidden_size" in space:
            raise ConfigError(
                f"study.match=params needs model.hidden_size searched; study.params fixes it to "
                f"{space['model.hidden_size']}"
            )


def _resolvable(cfg: DictConfig, key: str) -> bool:
    try:
        cfg[key]  # noqa: B018 (resolving is the test)
    except Exception:
        return False
    return True


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def is_search_space(override: str) -> bool:
    """Whether ``key=value`` sweeps (choice/range/interval, tagged or not) rather than fixes a value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:
        return False


def _check_space(cfg: DictConfig, params: Any) -> dict[str, str]:
    """``study.params`` as {key: override value}; every entry parses and names a key of the run config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    if params is None:
        return {}
    if not isinstance(params, DictConfig):
        raise ConfigError(
            f"study.params={_plain(params)!r} is not allowed; give a mapping, e.g. "
            "'study.params={model.optimizer.lr:\"tag(log, interval(1e-3, 1e-1))\"}'"
        )
    parser = OverridesParser.create()
    space = {}
    for key, value in params.items():
        key, text = str(key), value if isinstance(value, str) else override_value(_plain(value))
        line = f"{key}={text}"
        allowed = "allowed: a value, choice(a, b), range(a, b[, step]), interval(a, b), tag(log, interval(a, b))"
        try:
            override = parser.parse_override(line)
        except Exception:
            raise ConfigError(f"study.params: {line!r} does not parse; {allowed}") from None
        if override.is_sweep_override() and not isinstance(override.value(), (ChoiceSweep, RangeSweep, IntervalSweep)):
            raise ConfigError(f"study.params: {line!r} is not a search space; {allowed}")
        if OmegaConf.select(cfg, key, default="<missing>", throw_on_missing=False) == "<missing>":
            raise ConfigError(f"study.params: {key!r} is not a key of the run config (e.g. model.hidden_size)")
        if override_key(key) in OWNED:
            raise ConfigError(f"study.params: {key!r} is not allowed; the study sets it (use {OWNED[key]})")
        space[key] = text
    return space


def cap_space(space: str, cap: int) -> str:
    """A hidden-size search space with every value above ``cap`` removed (interval ends lowered)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    sweep = OverridesParser.create().parse_override(f"model.hidden_size={space}").value()
    tags = sorted(getattr(sweep, "tags", ()) or ())
    if isinstance(sweep, IntervalSweep):
        low = int(sweep.start)
        high = min(int(sweep.end), cap)
        if high < low:
            raise ConfigError(f"study.match=params: the ceiling allows hidden sizes up to {cap}, below {low}")
        inner = f"int(interval({low}, {high}))"
    elif isinstance(sweep, RangeSweep):
        values = [v for v in sweep.range() if v <= cap]
        inner = f"choice({', '.join(str(v) for v in values)})" if values else ""
    elif isinstance(sweep, ChoiceSweep):
        values = [v for v in sweep.list if v <= cap]
        inner = f"choice({', '.join(str(v) for v in values)})" if values else ""
    else:
        raise ConfigError(f"study.match=params: model.hidden_size={space} is not a search space")
    if not inner:
        raise ConfigError(f"study.match=params: no hidden size of {space} is within the ceiling ({cap})")
    return f"tag({', '.join(tags)}, {inner})" if tags else inner


def hidden_range(space: str) -> tuple[int, int]:
    """The smallest and largest hidden size a search space (or fixed value) allows."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    sweep = OverridesParser.create().parse_override(f"model.hidden_size={space}").value()
    if isinstance(sweep, IntervalSweep):
        return int(sweep.start), int(sweep.end)
    if isinstance(sweep, RangeSweep):
        values = list(sweep.range())
    elif isinstance(sweep, ChoiceSweep):
        values = list(sweep.list)
    else:
        values = [sweep]
    return int(min(values)), int(max(values))
