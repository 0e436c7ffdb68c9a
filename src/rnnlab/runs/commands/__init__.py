"""The ``rnnlab runs`` subcommands, one module each: every module here defining a ``Subcommand`` subclass
(``rnnlab.runs.subcommand``) adds it; ``rnnlab.runs.cli`` imports them all. Keep this file free of code:
importing a module here (``list``) sets a name of the same name in this package."""
