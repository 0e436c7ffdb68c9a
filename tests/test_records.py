"""Run records you can trust: nothing of a run is lost, mixed or rewritten, and every run says how it ended.

Each test is a case a user met (issue 16), run through the command line as they would.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import (
    ROOT,
    TINY,
    cli_env,
    read_hparams,
    read_scalars,
    read_session_status,
    run_cli,
    run_clis,
    start_cli,
    tiny,
)
from rnnlab.runs.store import read_record

pytestmark = pytest.mark.slow

TWO_EPOCHS = tiny(max_epochs=2)


def run_dirs(root: Path) -> list[Path]:
    return sorted(path.parent for path in (root / "logs").rglob("run.json") if path.parent.name.startswith("version_"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_gru(tmp_path_factory, data_dir) -> tuple[Path, list[str]]:
    """A finished 2-epoch GRU run (one-cycle schedule) and the arguments that made it. Trained once for the
    module: its tests only read it, or check that a refused resume left it as it was."""
    root = tmp_path_factory.mktemp("finished_gru")
    args = ["model=gru", *TWO_EPOCHS, "seed=7", f"paths.data_dir={data_dir}"]
    result = run_cli("train.py", *args, root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(root)
    return run_dir, args


def test_concurrent_identical_commands_get_distinct_run_directories(tmp_path, data_dir):
    args = ["model=vanilla", *TWO_EPOCHS, f"paths.data_dir={data_dir}"]
    # Two processes started together, and the same command in this process while they start.
    processes = [start_cli("train.py", *args, root=tmp_path) for _ in range(2)]
    here = run_cli("train.py", *args, root=tmp_path)
    outputs = [process.communicate(timeout=600) for process in processes] + [(here.stdout, here.stderr)]
    codes = [process.returncode for process in processes] + [here.returncode]
    assert codes == [0] * 3, [err[-2000:] for _, err in outputs]
    printed = {line.rsplit("run_dir=", 1)[1] for out, _ in outputs for line in out.splitlines() if "run_dir=" in line}
    dirs = run_dirs(tmp_path)
    assert len(printed) == 3 and {str(d) for d in dirs} == printed
    for run_dir in dirs:
        assert read_record(run_dir)["status"] == "completed"
        assert len(list(run_dir.rglob("overrides.yaml"))) == 1  # one .hydra record, one run
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch001.ckpt", "last.ckpt"]
        assert [step for step, _ in read_scalars(run_dir)["val/loss"]] == [2, 5]


REFUSED_RESUMES = [
    (["model.cell=lstm"], "model.cell=lstm (the run has gru) does not match the checkpoint"),
    (["model.hidden_size=16"], "model.hidden_size=16 (the run has 8) does not match the checkpoint"),
    (["trainer.max_epochs=4"], "trainer.max_epochs=4 (the run has 2) cannot change on resume of a one-cycle run"),
    (["model=lstm"], "'model=lstm' cannot change on resume; the run in"),
    ([], "trainer.max_epochs=2 is already reached by the run in"),
]


@pytest.fixture(scope="module")
def refused_resumes(finished_gru, tmp_path_factory) -> dict:
    """Every REFUSED_RESUMES command on the finished run, three at a time (refused beside each other, none may
    touch the run either); the run's files and test metrics before and after, and an eval of it afterwards."""
    run_dir, _ = finished_gru
    ckpt = run_dir / "checkpoints" / "last.ckpt"

    def files() -> dict:
        return {path: digest(path) for path in run_dir.rglob("*") if path.is_file() and path.name != ".run.json.lock"}

    before, metrics_before = files(), read_scalars(run_dir)["test/acc"]
    roots = [tmp_path_factory.mktemp("refused") for _ in REFUSED_RESUMES]
    results = run_clis(
        [("train.py", [f"ckpt_path={ckpt}", *change], root) for (change, _), root in zip(REFUSED_RESUMES, roots)]
    )
    after, metrics_after = files(), read_scalars(run_dir)["test/acc"]
    evaluated = run_cli("eval.py", f"ckpt_path={ckpt}", root=tmp_path_factory.mktemp("eval"))
    return dict(results=results, before=before, after=after, metrics=(metrics_before, metrics_after), eval=evaluated)


@pytest.mark.parametrize("row", range(len(REFUSED_RESUMES)), ids=[message for _, message in REFUSED_RESUMES])
def test_a_refused_resume_leaves_the_run_as_it_was(refused_resumes, row):
    change, message = REFUSED_RESUMES[row]
    refused = refused_resumes["results"][row]
    assert message in one_error_line(refused)
    if change == ["model=lstm"]:
        assert "was started with model=gru" in refused.stderr
    # config.yaml, .hydra/, events, checkpoints, run.json: untouched, nothing added; the test metrics kept
    assert refused_resumes["after"] == refused_resumes["before"]
    metrics_before, metrics_after = refused_resumes["metrics"]
    assert metrics_after == metrics_before
    assert refused_resumes["eval"].returncode == 0, refused_resumes["eval"].stderr[-2000:]  # still evaluates


def test_resume_with_the_original_command_continues_and_keeps_its_record(tmp_path, data_dir):
    args = ["model=vanilla", *TWO_EPOCHS, "~model/scheduler", "seed=7", f"paths.data_dir={data_dir}"]
    first = run_cli("train.py", *args, root=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    config = (run_dir / "config.yaml").read_text()

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    resumed = run_cli(
        "train.py",
        *[a for a in args if "max_epochs" not in a],
        "trainer.max_epochs=3",
        f"ckpt_path={ckpt}",
        root=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_dirs(tmp_path) == [run_dir]
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == overrides  # the command that made the run
    assert (run_dir / "config.yaml").read_text() == config
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epoch"] == 3
    assert record["overrides"] == args  # the original command ...
    (resume,) = record["resumes"]  # ... and the resume's own entry
    assert resume["status"] == "completed" and f"ckpt_path={ckpt}" in resume["overrides"]
    assert len(list((run_dir / ".hydra" / "resumes").iterdir())) == 1
    assert [step for step, _ in read_scalars(run_dir)["val/loss"]] == [2, 5, 8]


def test_a_finished_run_has_a_complete_record_and_a_successful_hparams_session(tmp_path, finished_gru):
    run_dir, args = finished_gru
    record = read_record(run_dir)
    assert record["status"] == "completed" and record["epoch"] == 2 and record["kind"] == "train"
    assert record["name"] == "gru-builtin-h8" and record["task"] == "mnist1d" and record["dir"] == str(run_dir)
    assert record["overrides"] == args and record["command"][1].endswith("train.py")
    assert record["params"]["model.cell"] == "gru" and record["params"]["seed"] == 7
    assert set(record["metrics"]) >= {"val/acc_best", "test/acc", "test/loss"}
    assert Path(record["checkpoints"]["best"]).is_file() and Path(record["checkpoints"]["last"]).is_file()
    assert record["versions"]["torch"] and record["versions"]["pytorch-lightning"] and record["devices"] == ["cpu"]
    assert record["ended"] and record["duration_s"] > 0 and record["pid"] > 0 and record["host"]
    assert read_session_status(run_dir) == "STATUS_SUCCESS"
    assert not (run_dir / "hparams.yaml").exists()
    # The session's hparams are the curated settings; no experiment of its own (TensorBoard builds one from
    # every session, varied settings first, tests/test_runs_table.py).
    hparams, metrics = read_hparams(run_dir)
    assert hparams["model.cell"] == "gru" and hparams["seed"] == 7 and metrics == []


def wait_for_epoch(run_dir_parent: Path, epoch: int, process, timeout: float = 240) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        for record_file in run_dir_parent.rglob("run.json"):
            if (json.loads(record_file.read_text()).get("epoch") or 0) >= epoch:
                return record_file.parent
        time.sleep(0.2)
    raise AssertionError(f"no epoch {epoch} within {timeout} s")


LONG = ["model=vanilla", *tiny(max_epochs=200, limit_train_batches=2, limit_val_batches=1), "~model/scheduler"]


# SIGTERM at a moment of the clock (it found the race between two checkpoint saves); Ctrl-C at that exact point:
# test_ctrl_c_between_the_best_and_the_last_checkpoint_takes_effect_after_both
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, "interrupted")])
def test_an_interrupted_run_says_so_and_can_be_continued(tmp_path, data_dir, sig, status):
    process = start_cli("train.py", *LONG, f"paths.data_dir={data_dir}", root=tmp_path)
    run_dir = wait_for_epoch(tmp_path / "logs", 2, process)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    # docs/usage.md "Exit codes": 130 for SIGINT, 143 for SIGTERM, one line, wherever in fit the signal lands
    assert process.returncode == 128 + sig and err.strip() == f"error: interrupted by {signal.Signals(sig).name}", err
    record = read_record(run_dir)
    assert record["status"] == status and record["epoch"] >= 2 and record["ended"], (record, err[-2000:])
    assert read_session_status(run_dir) == "STATUS_FAILURE"

    resumed = run_cli(
        "train.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"trainer.max_epochs={record['epoch'] + 1}",
        root=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_record(run_dir)["status"] == "completed"


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_a_run_stopped_between_the_best_and_the_last_checkpoint_is_continued(tmp_path, data_dir, how):
    """Lightning saves the best, then last.ckpt. Stopped between the two in an epoch with a new best, last.ckpt still
    names the previous best, so that file must still be there: Ctrl-C takes effect after both saves (the previous
    best deleted then: the two files of any interrupted run), and a kill -9 there leaves the previous best beside
    the new one, from which the resume completes, leaving one best and last.ckpt."""
    marker = tmp_path / "held"
    args = ["data=sine", *LONG, f"paths.data_dir={data_dir}"]  # val/loss: a new best most epochs
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *args],
        cwd=ROOT,
        env={**cli_env(tmp_path), "RNNLAB_TEST_HOLD": f"checkpoints:{marker}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoints, bests = tmp_path / "no run yet", set()
    for _ in range(100):  # the hold is met at each checkpoint hook: the sanity check's, each epoch's
        while not marker.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.05)
        checkpoints = next((tmp_path / "logs").rglob("checkpoints"), checkpoints)
        now = {path.name for path in checkpoints.glob("best-*.ckpt")}
        if bests and now - bests:
            break  # a new best written, the previous one to be deleted: last.ckpt still names it
        bests = now
        marker.unlink()  # on to the next hook
    (previous,), (best,) = bests, now - bests
    assert now == {previous, best}  # the previous best is kept until last.ckpt is written
    run_dir = checkpoints.parent
    if how == "SIGKILL":
        process.kill()
        process.communicate(timeout=120)
        assert sorted(path.name for path in checkpoints.iterdir()) == sorted([previous, best, "last.ckpt"])
    else:
        process.send_signal(signal.SIGINT)
        marker.unlink()
        _, err = process.communicate(timeout=120)
        assert process.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted by SIGINT", err[-3000:]
        record = read_record(run_dir)
        assert record["status"] == "interrupted" and record["ended"], record
        assert read_session_status(run_dir) == "STATUS_FAILURE"
        assert sorted(path.name for path in checkpoints.iterdir()) == [best, "last.ckpt"]
        return  # the state of any interrupted run, which its resume continues (the tests above)

    more = f"trainer.max_epochs={read_record(run_dir)['epoch'] + 2}"
    resumed = run_cli("train.py", f"ckpt_path={checkpoints / 'last.ckpt'}", more, root=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = read_record(run_dir)
    assert record["status"] == "completed"
    files = sorted(path.name for path in checkpoints.iterdir())
    assert files == [Path(record["checkpoints"]["best"]).name, "last.ckpt"], files  # no -v1 copy, nothing left


def test_a_raising_run_is_failed_with_its_error(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "fixtures"))
    crash = ["+callbacks.crash._target_=crashing.CrashAtEpoch", "+callbacks.crash.epoch=1"]
    result = run_cli("train.py", "model=vanilla", *TWO_EPOCHS, *crash, f"paths.data_dir={data_dir}", root=tmp_path)
    assert result.returncode != 0 and "crash at epoch 1" in result.stderr
    (run_dir,) = run_dirs(tmp_path)  # a real failure keeps its directory, to be looked at
    record = read_record(run_dir)
    assert record["status"] == "failed" and record["epoch"] == 1, record
    assert record["error"] == "RuntimeError: crash at epoch 1"
    assert read_session_status(run_dir) == "STATUS_FAILURE"


def test_an_optimized_metric_the_model_does_not_log_is_refused_before_training(tmp_path, data_dir):
    result = run_cli("train.py", *TINY, "optimized_metric=val/f1", f"paths.data_dir={data_dir}", root=tmp_path)
    assert "optimized_metric='val/f1' is not allowed; allowed: val/acc, val/acc_best, val/loss" in one_error_line(
        result
    )
    assert not (tmp_path / "logs").exists()


def test_a_constructor_error_leaves_no_directory_and_one_line(tmp_path, data_dir):
    result = run_cli("train.py", *TINY, "data.val_size=0", f"paths.data_dir={data_dir}", root=tmp_path)
    assert "data.val_size" in one_error_line(result)
    assert not (tmp_path / "logs").exists()


def test_eval_and_generate_outputs_carry_records(tmp_path, data_dir):
    trained = run_cli("train.py", "data=sine", "model=gru", *TWO_EPOCHS, root=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert run_cli("eval.py", f"ckpt_path={ckpt}", root=tmp_path).returncode == 0
    assert run_cli("generate.py", f"ckpt={ckpt}", "length=5", root=tmp_path).returncode == 0
    evaluated = read_record(run_dir / "eval" / "version_0")
    generated = read_record(run_dir / "generate" / "version_0")
    assert evaluated["kind"] == "eval" and evaluated["status"] == "completed" and "test/mse" in evaluated["metrics"]
    assert generated["kind"] == "generate" and "generate/mse" in generated["metrics"]
    assert evaluated["name"] == "gru-builtin-h8-eval" and evaluated["task"] == "sine"


def test_rnnlab_runs_lists_and_reruns_a_real_run_exactly(tmp_path, data_dir):
    args = ["model=gru", *TWO_EPOCHS, "seed=3", f"paths.data_dir={data_dir}"]
    assert run_cli("train.py", *args, root=tmp_path).returncode == 0
    (first,) = run_dirs(tmp_path)
    record = read_record(first)
    assert record["env"] == {}  # no RNNLAB_BUDGET shrank it: the command alone recreates it
    env = cli_env(tmp_path)

    def runs(*words: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "rnnlab.runs", *words]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    listed = runs("--json")
    assert listed.returncode == 0 and [r["id"] for r in json.loads(listed.stdout)] == [record["id"]]
    printed = runs("rerun", record["id"][:6]).stdout.strip()
    assert printed.endswith(" ".join(args))
    rerun = runs("rerun", record["id"][:6], "--exec")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    second = next(d for d in run_dirs(tmp_path) if d != first)
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in (first, second)]
    for config in configs:  # where the run's files went is the only difference
        config.pop("paths")
        config["trainer"].pop("default_root_dir", None)
        config["logger"]["tensorboard"].pop("save_dir")
        for callback in config["callbacks"].values():
            if callback and "dirpath" in callback:
                callback.pop("dirpath")
    assert configs[0] == configs[1]

    def params(run_dir: Path) -> dict:
        return {k: v for k, v in read_record(run_dir)["params"].items() if k != "trainer.default_root_dir"}

    assert params(first) == params(second)


def test_sweep_trials_carry_records_naming_their_sweep(tmp_path, data_dir):
    result = run_cli(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        *TWO_EPOCHS,
        f"paths.data_dir={data_dir}",
        root=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "multirun" / "mnist1d" / "mnist1d-lstm"
    records = sorted((read_record(d) for d in sweep_dir.glob("trial_*")), key=lambda r: r["parent"]["trial"])
    assert [r["parent"] for r in records] == [
        {"kind": "sweep", "dir": str(sweep_dir), "study": "mnist1d-lstm", "trial": number} for number in (0, 1)
    ]
    assert all(r["status"] == "completed" and "val/acc_best" in r["metrics"] for r in records)
