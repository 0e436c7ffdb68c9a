"""rnnlab: train, sweep and compare recurrent networks (vanilla RNN, GRU, LSTM).

Modules: ``cells`` (from-scratch cells), ``encoders`` (the recurrent encoder registry),
``data`` (datamodules), ``models`` (LightningModules), ``config`` (validation, resolvers),
``training`` (fit/test/eval driven by a Hydra config).
"""

__version__ = "0.1.0"
