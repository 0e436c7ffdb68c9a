"""Runs the documents' commands (tests/doc_commands.py) as a user would, under ``RNNLAB_BUDGET=tiny``.

One scratch root per document (``RNNLAB_ROOT`` and the working directory), so a later command sees the runs an
earlier one made; documents run in parallel worker processes, a document's commands in order. ``make X``
runs the commands ``make -n`` prints (the target's own recipe). ``src/*.py``, ``python -m``, ``python -c`` and
``rnnlab`` run inside the worker (torch is imported once per worker, not once per command: the start-up is
most of a tiny command's time); everything else, shell syntax included, in a subprocess. Servers
(tensorboard, optuna-dashboard) are started on a free port, must answer 200 on ``/``, and are stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from doc_commands import ROOT, Case, judge

VENV_BIN = Path(sys.executable).parent
TESTS = ROOT / "tests"
# The documents' commands that act on the checkout itself: run in a scratch copy of its tracked files.
ON_CHECKOUT = re.compile(r"^make (lint|format|clean|test)\b")
SERVERS = ("tensorboard", "optuna-dashboard")
MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")
TIMEOUT = 600  # make task-results: 18 tiny runs, one after another
# Each case's test records (CPU s, wall s, where, command) under this name; the suite's summary lists the
# costliest (costliest_commands).
DOC_COST = "document_command_cost"
COSTS_SHOWN = 15


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    ran: list[str]  # the command lines actually run (after make -n and the placeholders)
    root: str
    cpu: float  # CPU seconds, this worker's and its finished child processes' (the cost on 2 cores)

    def failure(self, case: Case) -> str | None:
        return judge(case, self.rc, self.stdout, self.stderr, self.root)


def run_documents(groups: dict[str, list[Case]], scratch: Path, data: Path | None, workers: int = 2) -> dict:
    """Run each document's cases in its own scratch root; {case.id: Result}."""
    order = sorted(groups, key=lambda doc: -sum(cost(case) for case in groups[doc]))
    results: dict[str, Result] = {}
    with ProcessPoolExecutor(min(workers, len(order) or 1), mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(run_document, groups[doc], scratch / re.sub(r"\W", "_", doc), data, str(scratch / "checkout"))
            for doc in order
        ]
        for future in futures:
            results.update(future.result())
    return results


def cost(case: Case) -> int:
    """A rough weight, to start the longest documents first (a study is many runs)."""
    if re.search(r"study|compare|results|bench|adding.lengths|task-results", case.text):
        return 20
    return 5 if "sweep" in case.text or " -m " in case.text else 1


def run_document(cases: list[Case], root: Path, data: Path | None, checkout: str) -> dict[str, Result]:
    """One document's cases in order, in this (worker) process."""
    root.mkdir(parents=True, exist_ok=True)
    if data is not None:
        shutil.copytree(data, root / "data", dirs_exist_ok=True)
    os.environ.update(
        RNNLAB_ROOT=str(root),
        RNNLAB_BUDGET="tiny",
        PYTHONWARNINGS="ignore",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),  # doc_pause
        COLUMNS="200",
    )
    os.chdir(root)
    results = {}
    done: dict = {}  # expanded command lines -> the result of the case that ran them (run_case)
    for case in cases:
        started, cpu = time.perf_counter(), cpu_seconds()
        try:
            ran, (rc, out, err) = run_case(case, root, Path(checkout), done)
        except Exception:  # the test's own failure (a placeholder it cannot fill): reported as the case's
            ran, (rc, out, err) = [case.text], (99, "", traceback.format_exc())
        seconds = time.perf_counter() - started
        results[case.id] = Result(rc, out, err, seconds, ran, str(root), cpu_seconds() - cpu)
    return results


def costliest_commands(reports: list) -> list[str]:
    """A title and the ``COSTS_SHOWN`` costliest document commands of a run's test reports (none: [])."""
    costs = [
        value
        for report in reports
        if report.when == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == DOC_COST
    ]
    costs.sort(key=lambda cost: -cost[0])
    lines = [f"{cpu:6.1f} s CPU {wall:6.1f} s  {where}  {text[:100]}" for cpu, wall, where, text in costs[:COSTS_SHOWN]]
    total = sum(cost[0] for cost in costs)
    return [f"costliest document commands ({total:.0f} s of CPU time in all)", *lines] if costs else []


def cpu_seconds() -> float:
    """User and system CPU time of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_case(case: Case, root: Path, checkout: Path, done: dict) -> tuple[list[str], tuple[int, str, str]]:
    """Expand one case into the command lines to run and run them in order (stopping at the first failure).

    A case that expands to the very lines an earlier case of the document ran and passed (``make task-results``
    beside ``python bench/tasks.py``, its recipe) takes that case's result from ``done``: the same command twice
    proves nothing more."""
    from doc_fill import fill

    text = re.sub(r"^time\s+", "", case.text)
    env = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(\S*)\s+", text))
    text = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*", "", text)
    env.pop("RNNLAB_ROOT", None)  # the document's scratch root stands for any root a command names
    cwd = root
    if ON_CHECKOUT.match(text):
        cwd = scratch_checkout(checkout)
    text = fill(text, root)
    lines = make_lines(text, cwd) if text.startswith("make") else [text]
    key = (tuple(absolute(line) for line in lines), str(cwd), tuple(sorted(env.items())))
    if key in done:
        return lines, done[key]
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    for line in lines:
        rc, o, e = run_line(absolute(line), cwd, env)
        out.write(o)
        err.write(e)
        if rc != 0:
            break
    if rc == 0:
        done[key] = (rc, out.getvalue(), err.getvalue())
    return lines, (rc, out.getvalue(), err.getvalue())


def scratch_checkout(path: Path) -> Path:
    """A copy of the repository's tracked files (``make format``, ``make clean`` change what they run in)."""
    if not path.exists():
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in files.decode().split("\0"):
            if name and (ROOT / name).is_file():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, path / name)
    return path


def make_lines(text: str, cwd: Path) -> list[str]:
    """The commands ``make`` would run for ``text`` (``make -n``), without reinstalling the environment."""
    port = free_port()
    makefile = cwd / "Makefile" if (cwd / "Makefile").exists() else ROOT / "Makefile"
    argv = ["make", "-n", "--no-print-directory", "-f", str(makefile), "-o", "install"]
    argv += [f"PY={sys.executable}", f"VENV={VENV_BIN.parent}", f"PORT={port}", *shlex.split(text)[1:]]
    # Under `make test ARGS=...` the suite inherits make's flags and the command line's variables; the
    # documented command runs as typed in a fresh shell, not with the suite's own ARGS.
    defined = set(re.findall(r"^([A-Z_]+)\s*[:?+]?=", makefile.read_text(), flags=re.M))
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES and k not in defined}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]  # `$(ARGS)` empty: a trailing space


def absolute(line: str) -> str:
    """``src/``, ``bench/``, ``tests/`` and ``.venv/bin/`` paths made absolute (commands run in a scratch root)."""
    line = re.sub(r"(^|\s)\.venv/bin/", lambda m: m.group(1) + f"{VENV_BIN}/", line)
    line = re.sub(r"^python3?(?=\s)", sys.executable, line)
    return re.sub(r"(^|\s)((?:src|bench|tests)/\S+\.py)\b", lambda m: m.group(1) + str(ROOT / m.group(2)), line)


def run_line(line: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    if re.search(r"\$\(|[|;>&<]", line.replace("->", "")):
        return subprocess_run(["bash", "-c", line], cwd, env)
    argv = shlex.split(line)
    program = Path(argv[0]).name
    if program in SERVERS:
        return serve(argv, cwd, env)
    python = argv[0] == sys.executable
    if not env and str(cwd) == os.getcwd():
        if python and len(argv) > 1 and argv[1].startswith(str(ROOT / "src")):
            return in_process(lambda: run_path(argv[1], argv[1:]))
        if python and argv[1:2] == ["-m"] and argv[2].startswith("rnnlab"):
            return in_process(lambda: run_module(argv[2], argv[2:]))
        if program == "rnnlab":  # the console script
            return in_process(lambda: console_script(argv))
    return subprocess_run(argv, cwd, env)


def subprocess_run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as error:
        return 124, str(error.stdout or ""), f"timed out after {TIMEOUT} s"
    return done.returncode, done.stdout, done.stderr


def run_path(script: str, argv: list[str]) -> None:
    import runpy

    sys.argv = argv
    runpy.run_path(script, run_name="__main__")


def run_module(module: str, argv: list[str]) -> None:
    import runpy

    sys.argv = argv
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def console_script(argv: list[str]) -> None:
    from rnnlab.cli import main

    sys.argv = argv
    raise SystemExit(main(argv[1:]))


def in_process(body) -> tuple[int, str, str]:
    """Run ``body`` here with file descriptors 1 and 2 captured; its exit code as a process would have it."""
    from inprocess import call_captured

    return call_captured(body)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Start a server, ask it for ``/`` until it answers 200 (60 s at most), stop it."""
    if Path(argv[0]).name == "tensorboard":
        argv = [*argv, "--port", str(free_port()), "--host", "127.0.0.1"]
    port = int(argv[argv.index("--port") + 1])
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    status, deadline = None, time.monotonic() + 60
    try:
        while status != 200 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.seek(0)
    output = log.read()
    if status == 200:
        return 0, f"answered 200 on http://127.0.0.1:{port}/\n", ""
    return 1, output, f"the server did not answer 200 on http://127.0.0.1:{port}/ (status {status})"


def records(root: Path) -> list[dict]:
    """The run records (run.json) under ``root``, oldest first."""
    found = []
    for path in root.glob("**/run.json"):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return sorted(found, key=lambda record: record.get("started") or "")
