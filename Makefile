# rnnlab — set-up and common commands. `make train` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
# The CPU wheel on this machine's disk; GPU users: `make install TORCH=torch`.
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
# Sweep storage (any Optuna RDB URL); empty = the sweeper's default, multirun/optuna.db.
STORAGE ?=
PORT    ?= 8080

.PHONY: install lint format train eval generate test test-quick coverage bench task-results adding-lengths results tensorboard sweep dashboard compare study runs gpu-check cluster-check clean

install: $(STAMP)

# Re-runs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: install
	$(PY) src/train.py $(ARGS)

eval: install
	$(PY) src/eval.py $(ARGS)

generate: install
	$(PY) src/generate.py $(ARGS)

# The formatter and linter (ruff) and the type checker (mypy), configured in pyproject.toml; `make format`
# applies ruff's fixes.
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Two pytest-xdist workers, a test file's tests on one (its module fixtures are made once).
test: install lint
	$(PY) -m pytest -n 2 --dist loadfile $(ARGS)

# The edit loop (<= 90 s): the unit tests of the modules that run in-process, and one tiny end-to-end run.
QUICK_TESTS := tests/test_cells.py tests/test_augment.py tests/test_data.py tests/test_encoders.py tests/test_layout.py \
	tests/test_runs.py tests/test_text.py tests/test_fused.py tests/test_tasks.py tests/test_diagnostics.py \
	tests/test_report.py tests/test_console.py
test-quick: install
	$(PY) -m pytest -m "smoke or not (slow or docs or configs or cluster)" -p no:cacheprovider $(QUICK_TESTS) $(ARGS)

# Line coverage of src/ by today's tests (the document, config and cluster tests apart); a .coverage file per process,
# combined.
coverage: install
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -n 2 --dist loadfile -p no:cacheprovider -q -m "not docs and not configs and not cluster" \
		$(ARGS); status=$$?; $(PY) -m coverage combine -q && $(PY) -m coverage report | grep -E "^(Name|TOTAL)"; exit $$status

bench: install
	$(PY) bench/run.py $(ARGS)

# Optuna sweep (conf/hparams_search/optuna.yaml); rerun the same command to continue the study.
sweep: install
	$(PY) src/train.py -m hparams_search=optuna $(if $(STORAGE),"hydra.sweeper.storage='$(STORAGE)'") $(ARGS)

# optuna-dashboard on the sweep storage, on localhost only.
dashboard: install
	$(VENV)/bin/optuna-dashboard "$(or $(STORAGE),sqlite:///multirun/optuna.db)" --host 127.0.0.1 --port $(PORT)

# The README's task results table (several minutes).
task-results: install
	$(PY) bench/tasks.py $(ARGS)

# The tuned MNIST-1D configs (conf/experiment/mnist1d_best_*), 3 seeds each: the README's results table.
results: install
	$(PY) bench/results.py $(ARGS)

# The adding problem's longest seq_len each cell solves within one budget (README "Results").
adding-lengths: install
	$(PY) bench/adding_lengths.py $(ARGS)

# Vanilla, GRU and LSTM x 3 seeds on MNIST-1D (conf/experiment/compare_cells.yaml), then the report of
# that sweep (written by the experiment's Hydra callback when the sweep ends): report.md and report.png in
# multirun/compare/<task>/<timestamp>/. `make compare ARGS="compare.match=params data=adding"`.
compare: install
	$(PY) src/train.py -m experiment=compare_cells $(ARGS)

# The runs' records (run.json): `make runs ARGS="--where 'model.cell=gru' --sort -val/acc_best"`,
# `make runs ARGS="show <id>"`; rnnlab runs --help lists the subcommands (show, diff, rerun, tag, note, rm).
runs: install
	$(PY) -m rnnlab.runs $(ARGS)

# Every cell tuned with one sweep budget, each best retrained over seeds, the report with confidence intervals
# and significance (conf/study.yaml, docs/study.md): multirun/study/<task>/<name>/report.md. Rerun to continue.
# `make study ARGS="study.cells=[gru,lstm] study.trials=10 data=adding"`.
study: install
	$(PY) src/study.py $(ARGS)

# On a machine with CUDA GPUs: the GPU tests, timed runs, a GPU sweep and the cells bench on the GPU, each within
# a budget (<= 8 minutes in all); one markdown summary, printed and written to gpu-check-<time>.md (docs/gpu-check.md).
# Without a GPU it stops at once with one line. `make gpu-check ARGS="--only tests,cells --out summary.md"`.
gpu-check: install
	$(PY) bench/gpu_check.py $(ARGS)

# The cluster tests (tests/cluster, docs/scaling.md#slurm) on a throwaway one-node SLURM cluster with accounting
# and a PostgreSQL server (tests/cluster/cluster.sh: root on Debian/Ubuntu; it apt-get installs slurm-wlm, munge,
# slurmdbd and mariadb-server where missing), started here and stopped after, also on failure or Ctrl-C. Where
# the cluster cannot start it stops with one line, `cluster: cannot start: <reason>`, and exit code 3.
cluster-check: install
	RNNLAB_CLUSTER_LONG=1 bash tests/cluster/cluster.sh run $(PY) -m pytest tests/cluster -m cluster -q -rs -p no:cacheprovider --durations=3 $(ARGS)

tensorboard: install
	$(VENV)/bin/tensorboard --logdir logs $(ARGS)

clean:
	rm -rf logs outputs data .pytest_cache
	find multirun -mindepth 1 ! -name README.md -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
