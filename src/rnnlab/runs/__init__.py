"""Run records (``run.json`` in every run directory) and the ``rnnlab runs`` command that reads them.

- ``record``: the live record of a run (``RunRecord``: start, resume, update, finish, guard);
- ``store``: the schema, reading and finding records, derived statuses (killed), editing, directory
  reservation, the normalisers of stored values; ``atomic``: atomic writes and file locks;
- ``environment``: host, versions, the command, git state; ``signals``: signals deferred over a write,
  SIGTERM as an interruption (the one home of rnnlab's signal handlers);
- ``query``: ``--where`` / ``--sort`` and run lookup; ``cli``: ``rnnlab runs``;
- ``hold``: one writer per run (the hold a command takes on the directory it writes); ``process``: whether
  a process still runs, and since when (records, holds and sweep workers ask it).

May import ``errors`` only: no torch, Lightning, Hydra or other rnnlab modules, so the CLI starts fast.
"""

from rnnlab.runs.environment import current_command, environment, git_patch, git_state
from rnnlab.runs.record import RunRecord
from rnnlab.runs.signals import interruptible
from rnnlab.runs.store import (
    KINDS,
    PARENT_KINDS,
    RECORD_FILE,
    SCHEMA,
    STATUSES,
    edit_record,
    find_records,
    find_run_dirs,
    flatten_params,
    read_record,
    reserve_dir,
)

__all__ = [
    "KINDS",
    "PARENT_KINDS",
    "RECORD_FILE",
    "SCHEMA",
    "STATUSES",
    "RunRecord",
    "current_command",
    "edit_record",
    "environment",
    "find_records",
    "find_run_dirs",
    "flatten_params",
    "git_patch",
    "git_state",
    "interruptible",
    "read_record",
    "reserve_dir",
]
