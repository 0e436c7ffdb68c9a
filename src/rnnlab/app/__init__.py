"""The application side: what the entry points (``src/train.py``, ``eval.py``, ``generate.py``) run.

Entry-point set-up and resolvers (``setup``), composition (``compose``), early validation (``validate``),
run directories and saved configs (``rundirs``), resume (``resume``), building a run (``build``), DDP launch
rules (``launch``), the run session around a command's body (``session``: the record, its fate, the run's
files; ``hparams``: its TensorBoard HPARAMS session; ``checkpoints``: the checkpoints kept and checked),
training (``train``), evaluation (``evaluate``), generation (``generate``), and the hidden size of a
comparison run (``compare``).

May import every other rnnlab package except ``report``; ``setup``, ``compose``, ``validate`` and
``rundirs`` stay light (no torch at import) so ``--help`` and config errors are fast.
"""
