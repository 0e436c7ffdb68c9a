"""Run records (``run.json`` in every run directory) and the ``rnnlab runs`` command that reads them.

- ``record``: the record (``RunRecord``: start, resume, update, finish; reading, killed detection,
  atomic directory reservation, git state);
- ``query``: ``--where`` / ``--sort`` and run lookup; ``cli``: ``rnnlab runs``;
- ``hold``: one writer per run (the hold a command takes on the directory it writes); ``process``: whether
  a process still runs, and since when (records, holds and sweep workers ask it).

May import ``errors`` only: no torch, Lightning, Hydra or other rnnlab modules, so the CLI starts fast.
"""

from rnnlab.runs.record import (
    KINDS,
    PARENT_KINDS,
    RECORD_FILE,
    SCHEMA,
    STATUSES,
    RunRecord,
    current_command,
    edit_record,
    environment,
    find_records,
    find_run_dirs,
    flatten_params,
    git_patch,
    git_state,
    interrupt_on_sigterm,
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
    "interrupt_on_sigterm",
    "read_record",
    "reserve_dir",
]
