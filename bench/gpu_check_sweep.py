"""Part 3 of the GPU check: an Optuna sweep with joblib workers sharing the GPUs, checked from its storage: each
trial's GPU and whether the trials overlapped."""

from __future__ import annotations

from collections.abc import Iterable

from gpu_check_runner import ROOT, Context, Outcome, Overrun, first_line, run_command, tail_block
from gpu_check_runs import TRAINER

SWEEP = {"trials": 8, "n_jobs": 4, "trials_per_gpu": 4, "epochs": 3}
TITLE = f"3. GPU sweep ({SWEEP['trials']} trials, {SWEEP['n_jobs']} joblib workers)"


def sweep_trials(storage: str, study_name: str) -> list[dict]:
    """Each stored trial of the study: number, state, gpu (the ``gpu`` user attribute, or None), start and end
    (datetimes; end None while running), value and params."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "gpu": t.user_attrs.get("gpu"),
            "start": t.datetime_start,
            "end": t.datetime_complete,
            "value": t.value,
            "params": t.params,
        }
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ]


def max_overlap(intervals: Iterable[tuple]) -> int:
    """The most intervals (start, end) open at one time; one ending as another starts does not overlap it."""
    intervals = list(intervals)
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in points:  # at equal times the end (-1) sorts first
        running += step
        most = max(most, running)
    return most


def sweep_checks(trials: list[dict], n_gpus: int, n_trials: int, n_jobs: int, trials_per_gpu: int) -> list[tuple]:
    """(check, passed, detail) for a GPU sweep's trials: all complete, each recorded a visible GPU, the GPUs used
    are those the sweeper hands out, trials overlapped, never more at once than the workers or a GPU allows."""
    timed = [t for t in trials if t["start"] is not None and t["end"] is not None]
    complete = sum(t["state"] == "COMPLETE" for t in trials)
    gpus = [t["gpu"] for t in trials]
    valid = [g for g in gpus if isinstance(g, int) and 0 <= g < n_gpus]
    slots = min(n_jobs, n_gpus * trials_per_gpu)
    expected = set(range(min(n_gpus, slots)))
    together = max_overlap((t["start"], t["end"]) for t in timed)
    per_gpu = {gpu: max_overlap((t["start"], t["end"]) for t in timed if t["gpu"] == gpu) for gpu in sorted(set(valid))}
    return [
        (f"{n_trials} trials complete", complete == n_trials == len(trials), f"{complete} of {len(trials)} complete"),
        (
            "each trial recorded its GPU (user attr `gpu`, a visible index)",
            bool(trials) and len(valid) == len(trials),
            "gpu per trial: " + ", ".join(f"{t['number']}→{t['gpu']}" for t in trials),
        ),
        (
            f"GPUs used are the sweeper's {slots} slots over {n_gpus} GPU(s)",
            set(valid) == expected,
            f"used {sorted(set(valid))}, expected {sorted(expected)}",
        ),
        ("trials overlapped", together >= 2, f"at most {together} trials ran at once"),
        (f"never more than {n_jobs} trials at once", together <= n_jobs, f"at most {together} at once"),
        (
            f"never more than {trials_per_gpu} trials on one GPU at once",
            all(n <= trials_per_gpu for n in per_gpu.values()),
            ", ".join(f"GPU {g}: {n}" for g, n in per_gpu.items()) or "no GPU recorded",
        ),
    ]


def trials_table(trials: list[dict]) -> str:
    origin = min((t["start"] for t in trials if t["start"] is not None), default=None)
    lines = [
        "| trial | state | gpu | start s | end s | seconds | value | params |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        start = (t["start"] - origin).total_seconds() if t["start"] and origin else float("nan")
        end = (t["end"] - origin).total_seconds() if t["end"] and origin else float("nan")
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" for k, v in t["params"].items())
        lines.append(
            f"| {t['number']} | {t['state']} | {t['gpu']} | {start:.1f} | {end:.1f} | {end - start:.1f} | {value} | "
            f"{params} |"
        )
    return "\n".join(lines)


def part_sweep(ctx: Context, deadline: float) -> Outcome:
    storage, study = f"sqlite:///{ctx.work}/gpu-sweep.db", "gpu-check"
    command = [
        ctx.python,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hparams_search=optuna",
        f"trainer={TRAINER}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={SWEEP['n_jobs']}",
        f"hydra.sweeper.trials_per_gpu={SWEEP['trials_per_gpu']}",
        f"hydra.sweeper.n_trials={SWEEP['trials']}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={study}",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
        "hydra/sweeper/pruner=none",  # every trial runs its whole budget: overlap is what is measured
        f"trainer.max_epochs={SWEEP['epochs']}",
        f"paths.data_dir={ctx.data_dir}",
    ]
    shown = "`" + " ".join(command[1:]).replace(str(ROOT) + "/", "").replace(str(ctx.work), "<tmp>") + "`"
    overrun, result = None, None
    try:
        result = run_command(command, deadline, ctx.env)
    except Overrun as stopped:
        overrun = stopped
    try:
        trials = sweep_trials(storage, study)
    except Exception as error:  # no study: the sweep failed before creating it
        output = (overrun.stdout + overrun.stderr) if overrun else (result.stdout + result.stderr)
        status = "overran" if overrun else "failed"
        return Outcome(status, f"no trials stored ({first_line(error)})", shown + "\n\n" + tail_block(output))
    checks = sweep_checks(trials, ctx.n_gpus, SWEEP["trials"], SWEEP["n_jobs"], SWEEP["trials_per_gpu"])
    body = "\n".join(
        [
            f"Command: {shown}",
            "",
            *(f"- [{'x' if ok else ' '}] {name}: {detail}" for name, ok, detail in checks),
            "",
            "Start and end: seconds from the first trial's start (Optuna's datetime_start / datetime_complete: "
            "asked to told).",
            "",
            trials_table(trials),
        ]
    )
    failed = [name for name, ok, _ in checks if not ok]
    together = max_overlap((t["start"], t["end"]) for t in trials if t["start"] and t["end"])
    summary = f"{sum(t['state'] == 'COMPLETE' for t in trials)} trials complete, up to {together} at once"
    if overrun:
        return Outcome("overran", f"stopped at its budget; {summary}", body + "\n\n" + tail_block(overrun.stderr))
    if result.returncode != 0 or failed:
        reason = f"sweep exit code {result.returncode}" if result.returncode else "failed: " + "; ".join(failed)
        return Outcome("failed", f"{reason}; {summary}", body + "\n\n" + tail_block(result.stdout + result.stderr))
    return Outcome("passed", summary, body)
