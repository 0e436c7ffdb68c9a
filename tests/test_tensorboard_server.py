"""TensorBoard itself, started on tiny logs, serves what a browser would show: the runs, the scalar tags
and values, the custom-scalars layout, the HPARAMS data with the real final metrics, the images (gradient
by step, confusion matrix, the report) and the report text."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import TINY, compose_config
from rnnlab.app.hparams import SESSION_RUN
from rnnlab.app.train import train
from rnnlab.callbacks.views import LAYOUT_CATEGORY
from rnnlab.report import write_report

pytestmark = pytest.mark.slow

TENSORBOARD = Path(sys.executable).with_name("tensorboard")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def logs(tmp_path_factory, data_dir):
    """Two tiny runs (vanilla, LSTM) under logs/mnist1d/..., plus the report run; their final metrics."""
    logdir = tmp_path_factory.mktemp("tb") / "logs"
    metrics = {}
    for cell in ("vanilla", "lstm"):
        run = f"mnist1d/{cell}-builtin-h8/seed42/version_0"
        cfg = compose_config("train", [*TINY, f"model={cell}", "model.readout=last"], logdir / run, data_dir)
        metrics[run] = train(cfg)
    write_report(logdir)
    return logdir, metrics


@pytest.fixture(scope="module")
def server(logs):
    logdir, _ = logs
    port = free_port()
    process = subprocess.Popen(
        [str(TENSORBOARD), "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1", "--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:  # until the server answers and has loaded all five runs (2 runs, their sessions, report)
            if process.poll() is not None:
                pytest.fail(f"tensorboard exited: {process.stderr.read()[-2000:]}")
            try:
                if len(get(base, "/data/runs")) >= 5:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("tensorboard did not serve the runs within 90 s")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode is not None


def get(base: str, route: str, body: dict | None = None, raw: bool = False):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + route, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        content = response.read()
    return content if raw else json.loads(content)


def test_runs_and_scalars_are_served(server, logs):
    _, metrics = logs
    sessions = [f"{run}/{SESSION_RUN}" for run in metrics]  # each run's HPARAMS session (rnnlab.app.hparams)
    assert sorted(get(server, "/data/runs")) == sorted([*metrics, *sessions, "report"])
    tags = get(server, "/data/plugin/scalars/tags")
    for run, final in metrics.items():
        assert {
            "train/loss_epoch",
            "val/acc",
            "val/acc_best",
            "test/acc",
            "grad_norm/encoder",
            "grad_norm/first_over_last",
            "model/num_parameters",
        } <= set(tags[run])
        points = get(server, f"/data/plugin/scalars/scalars?run={run}&tag=test/acc")
        assert points[-1][2] == pytest.approx(final["test/acc"], abs=1e-6)  # [wall_time, step, value]


def test_custom_scalars_layout_puts_train_and_val_of_every_run_on_one_chart(server):
    layout = get(server, "/data/plugin/custom_scalars/layout")
    (category,) = [c for c in layout["category"] if c["title"] == LAYOUT_CATEGORY]
    charts = {chart["title"]: chart["multiline"]["tag"] for chart in category["chart"]}
    assert charts["loss (train/loss_epoch, val/loss)"] == ["^train/loss_epoch$", "^val/loss$"]
    assert charts["accuracy (train/acc, val/acc)"] == ["^train/acc$", "^val/acc$"]


def test_hparams_hold_the_real_final_metrics_of_every_run(server, logs):
    _, metrics = logs
    experiment = get(server, "/data/plugin/hparams/experiment", {"experimentName": ""})
    assert {"model.cell", "model.hidden_size", "seed"} <= {h["name"] for h in experiment["hparamInfos"]}
    assert {"val/acc_best", "test/acc"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}

    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"metric": {"tag": "test/acc"}}, {"metric": {"tag": "val/acc_best"}}, {"hparam": "model.cell"}],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = get(server, "/data/plugin/hparams/session_groups", request)["sessionGroups"]
    served = {}
    for group in groups:
        (session,) = group["sessions"]
        served[session["name"]] = {v["name"]["tag"]: v["value"] for v in session["metricValues"]}
    assert sorted(served) == sorted(f"{run}/{SESSION_RUN}" for run in metrics)
    for run, final in metrics.items():
        session = served[f"{run}/{SESSION_RUN}"]
        assert session["test/acc"] == pytest.approx(final["test/acc"], abs=1e-6)
        assert session["val/acc_best"] == pytest.approx(final["val/acc_best"], abs=1e-6)


def test_images_and_report_text_are_served(server, logs):
    _, metrics = logs
    tags = get(server, "/data/plugin/images/tags")
    for run in metrics:
        assert {"diagnostics/grad_by_step", "figures/confusion_matrix"} <= set(tags[run])
    assert "report" in tags["report"]
    run = next(iter(metrics))
    (image,) = get(server, f"/data/plugin/images/images?run={run}&tag=figures/confusion_matrix")
    png = get(server, "/data/plugin/images/individualImage?" + image["query"], raw=True)
    assert png.startswith(b"\x89PNG")
    assert get(server, "/data/plugin/text/tags")["report"] == ["report/text_summary"]
    (text,) = get(server, "/data/plugin/text/text?run=report&tag=report/text_summary")
    assert "<table>" in text["text"] and "vanilla-builtin-h8" in text["text"]  # the report table, rendered
