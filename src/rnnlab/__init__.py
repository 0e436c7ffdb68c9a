"""rnnlab: train, sweep and compare recurrent networks (vanilla RNN, GRU, LSTM).

Packages by role, each importing only those before it:

- ``errors``, ``registry``, ``devices``: leaves (one-line errors, name registries, cores and GPUs);
- ``cells``: from-scratch cells, fused CPU kernels, the encoder registry, torch.nn interop;
- ``data``: the task contract (``TaskSpec``), tensor loaders, MNIST-1D, synthetic tasks, text;
- ``models``: input layers, readouts, the LightningModules, generation;
- ``callbacks``: gradient diagnostics, TensorBoard views and figures, text samples;
- ``runs``: run records and the ``rnnlab runs`` command;
- ``sweep``: the rnnlab side of Optuna sweeps (storage, results, trials, core sharing, GPU slots);
- ``app``: what the entry points run (set-up, composition, validation, resume, train/eval/generate);
- ``report``: the comparison report of a log directory;
- ``study``: the fair comparison of cells (tune each with one budget, confirm over seeds, report).
"""

__version__ = "0.1.0"
